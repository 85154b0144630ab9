"""A prompt-free student: an ultralytics YOLOv8 / YOLOv8-seg network with its class names, and nothing to prompt.

Inference takes images and nothing else: `predict(images)` letterboxes with mlcore's YOLO preprocessing (pixel-exact
with ultralytics' LetterBox), runs the network, applies ultralytics' own NMS and mask assembly, and maps the results
back to each original image. `save` writes a normal ultralytics checkpoint (`ultralytics.YOLO(path)` loads it, class
names included) with mlcore's own record under the "mlcore" key.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlcore.config.schemas.data import PreprocessingConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open
from mlcore.preprocess import PreprocessMeta, SingleModelPreprocessor
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb
from mlcore.preprocess.yolo_letterbox import letterbox_preprocessor
from mlcore.students.postprocess import postprocess_yolo
from mlcore.students.types import StudentPrediction
from mlcore.students.ultralytics_setup import configure_ultralytics

KINDS: tuple[str, ...] = ("yolov8", "yolov8_seg", "fastsam")
SIZES: tuple[str, ...] = ("n", "s", "m", "l", "x")
TASK_OF_KIND: dict[str, str] = {"yolov8": "detect", "yolov8_seg": "segment", "fastsam": "segment"}
# The convs' activation. SiLU is ultralytics' (and its pretrained weights'); ReLU is the edge variant: ONNX Runtime
# folds it into an int8 conv, where SiLU costs a QLinearSigmoid and a QLinearMul per conv (~1/4 of the INT8 time).
ACTIVATIONS: tuple[str, ...] = ("silu", "relu")
CHECKPOINT_KEY = "mlcore"


@dataclass
class Student:
    """An ultralytics detection or segmentation model plus what mlcore knows about it.

    kind: yolov8 | yolov8_seg | fastsam; size: n/s/m/l/x; model: ultralytics DetectionModel / SegmentationModel with
    `names` and `args` (ultralytics' hyperparameters, which its loss classes read); class_names: index -> name;
    extra: mlcore's record that travels in the checkpoint (mode, class mapping, lineage).
    """

    kind: str
    size: str
    model: nn.Module
    class_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return TASK_OF_KIND[self.kind]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def activation(self) -> str:
        """silu or relu: what the network's convs use (read from the modules, so any checkpoint answers)."""
        return activation_of(self.model)

    @property
    def stride(self) -> int:
        """The largest stride: input sizes must be a multiple of it."""
        return int(self.model.stride.max())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> Student:
        self.model.to(device)
        return self

    # -- inference ----------------------------------------------------------------------------------------------

    def preprocessor(self, imgsz: int = 640,
                     preprocessing: PreprocessingConfig | Mapping[str, Any] | None = None) -> SingleModelPreprocessor:
        """YOLO letterbox to imgsz x imgsz (other fields from `preprocessing`, schema defaults when None)."""
        if imgsz <= 0 or imgsz % self.stride:
            raise ConfigError(f"imgsz {imgsz} is not a positive multiple of the student's stride {self.stride}",
                              where="imgsz", fix=f"use e.g. {max(imgsz // self.stride, 1) * self.stride}")
        return letterbox_preprocessor(imgsz, preprocessing)

    @torch.no_grad()
    def predict(self, images: ImageInput | Sequence[ImageInput], *, imgsz: int = 640, conf: float = 0.25,
                iou: float = 0.7, max_det: int = 300) -> list[StudentPrediction]:
        """Detect (and segment) objects in one image or a list; always one StudentPrediction per image.

        images: paths, (H, W, 3) uint8 RGB arrays or PIL images. Results are in each image's own pixel frame.
        """
        rgbs = [load_rgb(image) for image in (images if is_batch(images) else [images])]
        if not rgbs:
            return []
        batch = self.preprocessor(imgsz)(rgbs)
        return self.predict_tensor(batch.pixel_values, batch.meta, conf=conf, iou=iou, max_det=max_det)

    @torch.no_grad()
    def predict_tensor(self, pixel_values: torch.Tensor, metas: Sequence[PreprocessMeta], *, conf: float = 0.25,
                       iou: float = 0.7, max_det: int = 300, multi_label: bool = False) -> list[StudentPrediction]:
        """Predictions for a batch already letterboxed ((B, 3, H, W), pixels 0-1) with each image's meta.

        multi_label: a box may be kept once per class scoring above conf (ultralytics' validation does this).
        """
        if pixel_values.dim() != 4 or len(metas) != pixel_values.shape[0]:
            raise ValueError(f"need (B, 3, H, W) pixels and B metas, got {tuple(pixel_values.shape)} and "
                             f"{len(metas)} metas")
        # Restore each module's own mode afterwards: a trainer may keep some (frozen BatchNorm) in eval.
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            parameter = next(self.model.parameters())
            outputs = self.model(pixel_values.to(device=parameter.device, dtype=parameter.dtype))
        finally:
            for module, training in modes:
                module.training = training
        head = outputs[0]  # eval mode: (inference output, raw head output)
        decoded, protos = head if self.task == "segment" else (head, None)
        return postprocess_yolo(decoded, protos, metas, input_size=tuple(pixel_values.shape[-2:]),
                                num_classes=self.num_classes, conf=conf, iou=iou, max_det=max_det,
                                multi_label=multi_label)

    # -- checkpoints --------------------------------------------------------------------------------------------

    def checkpoint(self, *, extra: Mapping[str, Any] | None = None, imgsz: int = 640) -> dict[str, Any]:
        """The dict `save` writes: ultralytics' final-checkpoint layout (fp16 model, no optimizer) plus "mlcore"."""
        configure_ultralytics()
        from ultralytics import __version__
        from ultralytics.utils import DEFAULT_CFG_DICT

        with _hooks_set_aside(self.model):  # a trainer's feature taps (and what they hold) stay out of the file
            model = deepcopy(self.model).cpu().half().eval()
        model.args = {**DEFAULT_CFG_DICT, **_as_dict(getattr(self.model, "args", None))}
        model.names = dict(enumerate(self.class_names))
        if hasattr(model, "criterion"):
            model.criterion = None  # training-only state, as ultralytics strips it
        for parameter in model.parameters():
            parameter.requires_grad = False
        train_args = {**model.args, "task": self.task, "imgsz": imgsz, "single_cls": self.kind == "fastsam",
                      "model": Path(getattr(self.model, "yaml", {}).get("yaml_file") or "").name or None}
        return {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": model,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "scaler": None,
            "train_args": train_args,
            "train_metrics": {},
            CHECKPOINT_KEY: {"kind": self.kind, "size": self.size, "class_names": list(self.class_names),
                             "extra": dict(self.extra if extra is None else extra)},
        }

    def save(self, path: str | os.PathLike[str], *, extra: Mapping[str, Any] | None = None,
             imgsz: int = 640) -> Path:
        """Write an ultralytics checkpoint atomically; extra (plain JSON-like data, default self.extra) rides along.

        imgsz becomes the checkpoint's default input size for `ultralytics.YOLO(path).predict`.
        """
        path = Path(path)
        checkpoint = self.checkpoint(extra=extra, imgsz=imgsz)
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Student:
        """A student from a checkpoint `save` (or ultralytics' trainer) wrote; fp32, trainable."""
        path = Path(path)
        if not path.is_file():
            raise ModelError("student checkpoint not found", where=str(path),
                             fix="give the path of a .pt file written by `mlcore train-student` or ultralytics")
        model, checkpoint = load_ultralytics_checkpoint(path)
        from ultralytics.utils import IterableSimpleNamespace

        model.args = IterableSimpleNamespace(**dict(model.args))
        for parameter in model.parameters():
            parameter.requires_grad = True
        record = checkpoint.get(CHECKPOINT_KEY) or {}
        task = getattr(model, "task", "detect")
        if task not in ("detect", "segment"):
            raise ModelError(f"this checkpoint is a {task!r} model; students detect or segment", where=str(path),
                             fix="use a YOLOv8 detection or segmentation checkpoint")
        kind = record.get("kind") or ("yolov8_seg" if task == "segment" else "yolov8")
        size = record.get("size") or str(model.yaml.get("scale") or "n")
        names = model.names if isinstance(model.names, Mapping) else dict(enumerate(model.names))
        class_names = [str(names[index]) for index in range(len(names))]
        return cls(kind=kind, size=size, model=model.to(device), class_names=class_names,
                   extra=dict(record.get("extra") or {}))


def student_name(kind: str, size: str, activation: str = "silu") -> str:
    """The CLI name of a student: yolov8n, yolov8s-seg, fastsam-s; the ReLU variants end in -relu."""
    name = {"yolov8": f"yolov8{size}", "yolov8_seg": f"yolov8{size}-seg", "fastsam": f"fastsam-{size}"}[kind]
    return name if activation == "silu" else f"{name}-{activation}"


def activation_of(model: nn.Module) -> str:
    """The activation of the network's first conv block (ultralytics builds every Conv with the same one)."""
    for module in model.modules():
        act = getattr(module, "act", None)
        if isinstance(act, nn.Module) and hasattr(module, "conv"):
            return "relu" if isinstance(act, nn.ReLU) else "silu"
    return "silu"


def load_ultralytics_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """ultralytics' own loader (fp32, eval), its failures as ModelError."""
    configure_ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    try:
        return load_checkpoint(str(path), device="cpu")
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError, ModuleNotFoundError) as exc:
        raise ModelError(f"not a loadable ultralytics checkpoint: {str(exc).strip().splitlines()[0]}",
                         where=str(path), fix="give a .pt written by ultralytics or by mlcore") from None


@contextlib.contextmanager
def _hooks_set_aside(model: nn.Module) -> Iterator[None]:
    """Empty every module's hook dicts for the duration (same dict objects put back, so handles keep working)."""
    names = [name for name in vars(nn.Module()) if name.endswith("_hooks") or "_hooks_" in name]
    saved = []
    for module in model.modules():
        for name in names:
            hooks = getattr(module, name, None)
            if isinstance(hooks, dict) and hooks:
                saved.append((module, name, hooks))
                setattr(module, name, OrderedDict())
    try:
        yield
    finally:
        for module, name, hooks in saved:
            setattr(module, name, hooks)


def _as_dict(args: Any) -> dict[str, Any]:
    """ultralytics keeps model.args as a namespace while training and as a dict in checkpoints."""
    if args is None:
        return {}
    return dict(args) if isinstance(args, Mapping) else dict(vars(args))
