"""Students with random weights at size n, CPU, small images; ultralytics' settings in a temp dir."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch

from mlcore.students import Student, configure_ultralytics, get_student_model

CLASS_NAMES = ["cat", "dog", "bird"]
KIND_MODE = {"yolov8": "detection_only", "yolov8_seg": "detection_and_segmentation", "fastsam": "segmentation_only"}


@pytest.fixture(scope="session", autouse=True)
def ultralytics_home(tmp_path_factory: pytest.TempPathFactory):
    """ultralytics writes settings.json on first import: into a temp dir, unless a run already chose one."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    return configure_ultralytics()


def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def make_student() -> Callable[[str], Student]:
    def make(kind: str, class_names: list[str] | None = None, seed: int = 0) -> Student:
        """Seeded: random weights can leave every mask empty, and a test should not depend on the draw."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return get_student_model(KIND_MODE[kind], "n", class_names=class_names or CLASS_NAMES, kind=kind)

    return make
