"""Seeded random-weight students (detect and seg) at imgsz 64, their .pt, fixed-batch and dynamic-batch ONNX exports,
and a small demo dataset of real images; built once per session, caches in temp dirs."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mlcore.data.demo import CATEGORIES, make_demo_dataset
from mlcore.optimization import export_to_onnx
from mlcore.students import Student, configure_ultralytics, get_student_model
from tests.unit.live_student import calibrate_batchnorm

IMGSZ = 96
CLASS_NAMES = [category["name"] for category in CATEGORIES]  # square, circle, triangle: ids 1, 2, 3
KIND_MODE = {"yolov8": "detection_only", "yolov8_seg": "detection_and_segmentation"}


@dataclass
class Exported:
    student: Student
    pt: Path
    onnx: Path  # ultralytics' default export: batch fixed at 1
    onnx_dynamic: Path  # dynamic batch (and spatial) axes


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # onnxruntime writes its cache there
    configure_ultralytics()
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def demo_annotations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=5, negatives=1, image_size=(160, 120),
                             seed=3)


@pytest.fixture(scope="session")
def demo_images(demo_annotations: Path) -> list[Path]:
    return sorted((demo_annotations.parent / "images").iterdir())


def enliven(student: Student, images: list[Path]) -> None:
    """Random weights predict near-identical whole-image boxes for every input: calibrate BatchNorm on real images
    and sharpen the box head's DFL logits, so boxes, scores and classes depend on the image (a real parity test)."""
    from mlcore.preprocess.yolo_letterbox import letterbox_images

    calibrate_batchnorm(student.model, letterbox_images(images, IMGSZ).pixel_values)
    with torch.no_grad():
        for branch in student.model.model[-1].cv2:
            branch[-1].weight.mul_(30.0)
            branch[-1].bias.zero_()


def _export(kind: str, root: Path, images: list[Path]) -> Exported:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = get_student_model(KIND_MODE[kind], "n", class_names=CLASS_NAMES, kind=kind)
    enliven(student, images)
    student.model.half().float()  # the weights the checkpoint (and so the exporter) holds
    pt = student.save(root / "student.pt", imgsz=IMGSZ)
    onnx = export_to_onnx(student, root / "student.onnx", imgsz=IMGSZ, dynamic_batch=False).path
    dynamic_dir = root / "dynamic"
    dynamic_dir.mkdir()
    shutil.copy(pt, dynamic_dir / "student.pt")
    from ultralytics import YOLO

    exported = YOLO(str(dynamic_dir / "student.pt"), task=student.task).export(
        format="onnx", imgsz=IMGSZ, dynamic=True, simplify=False, device="cpu", verbose=False)
    return Exported(student=student, pt=pt, onnx=onnx, onnx_dynamic=Path(exported))


@pytest.fixture(scope="session")
def detect_model(tmp_path_factory: pytest.TempPathFactory, demo_images: list[Path]) -> Exported:
    return _export("yolov8", tmp_path_factory.mktemp("detect"), demo_images)


@pytest.fixture(scope="session")
def seg_model(tmp_path_factory: pytest.TempPathFactory, demo_images: list[Path]) -> Exported:
    return _export("yolov8_seg", tmp_path_factory.mktemp("seg"), demo_images)


@pytest.fixture(scope="session", params=["detect", "segment"])
def exported(request: pytest.FixtureRequest) -> Exported:
    return request.getfixturevalue("detect_model" if request.param == "detect" else "seg_model")
