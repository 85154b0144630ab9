"""PyTorchEngine: a student checkpoint (.pt) or a `Student` run by PyTorch behind the shared engine interface."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlcore.errors import ModelError
from mlcore.inference.base import EngineBase, check_batch
from mlcore.inference.types import Detections
from mlcore.preprocess import PreprocessMeta
from mlcore.students.student import Student, student_name


class PyTorchEngine(EngineBase):
    """Runs a `Student` (or the checkpoint at `model`) with the student's own `predict_tensor`.

    device: "auto" (CUDA when torch sees one, else CPU; a given Student stays where it is), "cpu", "cuda", "cuda:1".
    imgsz: the letterbox size, default the size the checkpoint was trained / saved at (640 when it says none).
    class_names: replace the checkpoint's names (same count).
    """

    def __init__(self, model: Student | str | os.PathLike[str], *, device: str = "auto", imgsz: int | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        if isinstance(model, Student):
            student, self.path = model, None
            if device != "auto":
                student.to(device)
        else:
            self.path = Path(model)
            student = Student.load(self.path, device=_torch_device(device))
        if class_names is not None:
            if len(class_names) != student.num_classes:
                raise ModelError(f"{len(class_names)} class names given for a model with {student.num_classes} "
                                 "classes", where=str(self.path or "class_names"),
                                 fix=f"pass {student.num_classes} names, or leave class_names out")
            student.class_names = [str(name) for name in class_names]
        self.student = student
        self.imgsz = int(imgsz or _trained_imgsz(student))
        student.preprocessor(self.imgsz)  # a ConfigError now, not at the first image, when not a stride multiple
        self.class_names = student.class_names
        self.task = student.task
        self.device = str(student.device)
        label = self.path.name if self.path else student_name(student.kind, student.size, student.activation)
        self.name = f"pytorch:{label}"

    @torch.no_grad()
    def predict_batch(self, pixel_values: np.ndarray | torch.Tensor, metas: Sequence[PreprocessMeta], *,
                      conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                      multi_label: bool = False) -> list[Detections]:
        pixels = check_batch(pixel_values, metas, self.imgsz)
        return self.student.predict_tensor(pixels, metas, conf=conf, iou=iou, max_det=max_det,
                                           multi_label=multi_label)


def _torch_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA GPU", where="device",
                         fix='use device="cpu" (or "auto")')
    return device


def _trained_imgsz(student: Student) -> int:
    """ultralytics' loader puts the checkpoint's train_args (imgsz among them) into model.args."""
    args = getattr(student.model, "args", None)
    size = args.get("imgsz") if isinstance(args, dict) else getattr(args, "imgsz", None)
    if isinstance(size, (list, tuple)) and size:
        size = max(size)
    return int(size) if isinstance(size, (int, float)) and size > 0 else 640
