"""Seeded random-weight students at small sizes, the demo shapes as real images, exports shared per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mlcore.data.demo import make_demo_dataset
from mlcore.students import Student, configure_ultralytics, get_student_model
from tests.unit.live_student import image_dependent

IMGSZ = 128
CLASS_NAMES = ["square", "circle", "triangle"]  # the demo dataset's categories, in id order
KIND_MODE = {"yolov8": "detection_only", "yolov8_seg": "detection_and_segmentation"}


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ultralytics' settings and onnxruntime's cache go into temp dirs."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    configure_ultralytics()


@dataclass(frozen=True)
class Demo:
    annotations: Path
    images: Path

    def image_paths(self) -> list[Path]:
        return sorted(self.images.glob("*.jpg"))


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("demo")
    annotations = make_demo_dataset(root, num_images=10, image_size=(160, 120), negatives=1, seed=3)
    return Demo(annotations=annotations, images=root / "images")


@pytest.fixture(scope="session")
def make_student(demo: Demo) -> Callable[..., Student]:
    def make(kind: str = "yolov8", seed: int = 0, live: bool = True, activation: str = "silu") -> Student:
        """Seeded, and image-dependent unless `live` is False (BatchNorm statistics from the demo images: a plain
        random YOLO's outputs ignore the image, so int8 and fp32 would "agree" on constants); the class-score biases
        are zeroed so scores sit near 0.5 instead of ultralytics' ~1e-4 prior (it would otherwise detect nothing)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            student = get_student_model(KIND_MODE[kind], "n", class_names=CLASS_NAMES, kind=kind,
                                        activation=activation)
        with torch.no_grad():
            for branch in student.model.model[-1].cv3:
                branch[-1].bias.zero_()
        return image_dependent(student, demo.image_paths(), imgsz=IMGSZ) if live else student

    return make


@pytest.fixture(scope="session")
def detector_pt(make_student: Callable[..., Student], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_student("yolov8").save(tmp_path_factory.mktemp("student") / "best.pt", imgsz=IMGSZ)


@pytest.fixture(scope="session")
def detector_onnx(detector_pt: Path, demo: Demo, tmp_path_factory: pytest.TempPathFactory):
    from mlcore.optimization import export_to_onnx

    return export_to_onnx(detector_pt, tmp_path_factory.mktemp("onnx") / "model.onnx", imgsz=IMGSZ,
                          parity_images=demo.image_paths()[:3])


@pytest.fixture(scope="session")
def detector_int8(detector_onnx, demo: Demo, tmp_path_factory: pytest.TempPathFactory):
    from mlcore.optimization import CalibrationReader, quantize_int8_static

    reader = CalibrationReader.for_model(detector_onnx.path, demo.image_paths()[:6])
    return quantize_int8_static(detector_onnx.path, tmp_path_factory.mktemp("int8") / "model.int8.onnx",
                                reader)
