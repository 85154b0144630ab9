"""Student configs: the prompt-free ultralytics models the teachers are distilled into.

The training fields map one-to-one onto ultralytics `model.train(...)` arguments so the trainer can pass them through.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from mlcore.config.schemas.common import ConfigModel, DatasetSection, OptionalPath

_DEVICE = re.compile(r"^(auto|cpu|mps|\d+(,\d+)*)$")


def _device_to_text(value: Any) -> Any:
    # YAML reads `device: 0` as an int and `[0, 1]` as a list; ultralytics wants "0" / "0,1".
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value


Device = Annotated[str, BeforeValidator(_device_to_text)]

_SIZE_HELP = "Architecture width/depth: n (3 M params), s, m, l, x (68 M); n or s for edge devices."
_WEIGHTS_HELP = (
    "Local .pt checkpoint to start from; null: build from the architecture YAML (random init). Only local paths: "
    "a bare name such as yolov8n.pt makes ultralytics try to download it."
)


class StudentTraining(ConfigModel):
    """ultralytics training arguments (same names), shared by every student."""

    imgsz: int = Field(default=640, ge=32, description="Square input size in pixels; a multiple of 32.")
    epochs: int = Field(default=100, ge=1, description="Passes over the training data.")
    batch: int = Field(default=16, ge=-1, description="Images per batch; -1 lets ultralytics pick (GPU only).")
    optimizer: Literal["auto", "SGD", "AdamW"] = Field(
        default="auto", description="auto (ultralytics picks by dataset size), SGD or AdamW."
    )
    lr0: float = Field(default=0.01, gt=0.0, description="Initial learning rate (ignored when optimizer is auto).")
    patience: int = Field(default=50, ge=0, description="Stop after this many epochs without improvement.")
    device: Device = Field(
        default="auto", description="auto (GPU when present), cpu, mps, a GPU index (0) or several (0,1)."
    )
    workers: int = Field(default=8, ge=0, description="Data-loader processes; 0 loads in the main process.")
    amp: Literal["auto"] | bool = Field(
        default="auto", description="Mixed precision: auto (on for CUDA, off on CPU), true or false."
    )

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"imgsz must be a multiple of 32 (the model's largest stride), e.g. {value // 32 * 32}")
        return value

    @field_validator("batch")
    @classmethod
    def _batch_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("batch must be -1 (automatic) or at least 1")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("device must be auto, cpu, mps, a GPU index such as 0, or a list such as 0,1")
        return value


class StudentModel(ConfigModel):
    size: Literal["n", "s", "m", "l", "x"] = Field(default="n", description=_SIZE_HELP)
    weights: OptionalPath = Field(default=None, description=_WEIGHTS_HELP)

    @field_validator("weights")
    @classmethod
    def _pt_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix != ".pt":
            raise ValueError(f"weights must be a local .pt file, got {value}")
        return value


class FastSamModel(StudentModel):
    size: Literal["n", "s", "m", "l", "x"] = Field(
        default="s", description="YOLOv8-seg size under FastSAM: s (FastSAM-s) or x (FastSAM-x) as published."
    )


class SingleClassDatasetSection(ConfigModel):
    """Dataset for FastSAM: every category is trained as one class, so no class list."""

    train: OptionalPath = Field(default=None, description="COCO training JSON (placeholder {{dataset_train}}).")
    train_images: OptionalPath = Field(default=None, description="Training images folder ({{dataset_train_images}}).")
    val: OptionalPath = Field(default=None, description="COCO validation JSON (placeholder {{dataset_val}}).")
    val_images: OptionalPath = Field(default=None, description="Validation images folder ({{dataset_val_images}}).")
    class_name: str = Field(
        default="object", min_length=1, description="Name of the single class all annotations are merged into."
    )


class StudentYolov8Config(ConfigModel):
    """YOLOv8 detector student: boxes only."""

    kind: Literal["student_yolov8"] = Field(default="student_yolov8", description="Config type.")
    model: StudentModel = Field(default_factory=StudentModel, description="Architecture and starting weights.")
    data: DatasetSection = Field(default_factory=DatasetSection, description="The COCO dataset.")
    training: StudentTraining = Field(default_factory=StudentTraining, description="ultralytics train arguments.")


class StudentYolov8SegConfig(ConfigModel):
    """YOLOv8-seg student: boxes and instance masks per class."""

    kind: Literal["student_yolov8_seg"] = Field(default="student_yolov8_seg", description="Config type.")
    model: StudentModel = Field(default_factory=StudentModel, description="Architecture and starting weights.")
    data: DatasetSection = Field(default_factory=DatasetSection, description="The COCO dataset (with masks).")
    training: StudentTraining = Field(default_factory=StudentTraining, description="ultralytics train arguments.")


class StudentFastSamConfig(ConfigModel):
    """FastSAM student: a single-class YOLOv8-seg that segments "anything"; class identity is not learned.

    Single class is forced (no class_names field): FastSAM's design is class-agnostic masks, so every COCO category
    is merged into `data.class_name`. Use student_yolov8_seg when classes matter.
    """

    kind: Literal["student_fastsam"] = Field(default="student_fastsam", description="Config type.")
    model: FastSamModel = Field(default_factory=FastSamModel, description="Architecture and starting weights.")
    data: SingleClassDatasetSection = Field(
        default_factory=SingleClassDatasetSection, description="The COCO dataset, trained as one class."
    )
    training: StudentTraining = Field(default_factory=StudentTraining, description="ultralytics train arguments.")
