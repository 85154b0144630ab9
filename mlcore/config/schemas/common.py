"""Building blocks shared by every config schema: the strict base model, YAML-safe field types, the dataset section.

Every field carries its documentation in `Field(description=...)` (as PEFT's config dataclasses carry help text): the
templates repeat it as comments, and `mlcore` code never hard-codes what a field already says.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# Same words as mlcore.data.mode.AnnotationMode (a test keeps them equal); repeated so config stays import-light.
ANNOTATION_MODES = ("detection_only", "segmentation_only", "detection_and_segmentation")
AnnotationMode = Literal[ANNOTATION_MODES]


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _yaml_bool_to_precision(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as False and `on` as True; users mean the words.
    if value is False:
        return "off"
    if value is True:
        return "auto"
    return value


MixedPrecision = Annotated[Literal["auto", "bf16", "fp16", "off"], BeforeValidator(_yaml_bool_to_precision)]

def _empty_to_none(value: Any) -> Any:
    # `${VAR:-}` with VAR unset yields "": that means "not set", not "the current directory".
    return None if value == "" else value


OptionalPath = Annotated[Path | None, BeforeValidator(_empty_to_none)]


def models_dir_from_env() -> Path | None:
    """Default for `weights_dir` fields: $MLCORE_MODELS_DIR when set, read at validation time."""
    value = os.environ.get("MLCORE_MODELS_DIR")
    return Path(value) if value else None


MIXED_PRECISION_HELP = (
    "Autocast dtype: auto (bf16 where the GPU supports it, else fp16 on CUDA, off on CPU), bf16, fp16 or off (fp32)."
)


class DatasetSection(ConfigModel):
    """Where the COCO data lives and what it contains; `mlcore validate --generate-configs` fills it in."""

    train: OptionalPath = Field(
        default=None,
        description="COCO annotation JSON of the training split (placeholder {{dataset_train}}). None: not set yet.",
    )
    train_images: OptionalPath = Field(
        default=None,
        description="Folder the training JSON's `file_name`s are relative to (placeholder {{dataset_train_images}}).",
    )
    val: OptionalPath = Field(
        default=None,
        description="COCO annotation JSON of the validation split (placeholder {{dataset_val}}); used for mAP.",
    )
    val_images: OptionalPath = Field(
        default=None,
        description="Folder the validation JSON's `file_name`s are relative to (placeholder {{dataset_val_images}}).",
    )
    class_names: list[str] | None = Field(
        default=None,
        description="Category names in COCO category-id order (placeholder {{class_names}}); they become the "
        "model's class indices 0..N-1.",
    )
    num_classes: int | None = Field(
        default=None,
        ge=1,
        description="Number of categories (placeholder {{num_classes}}); must equal len(class_names) if both set.",
    )
    annotation_mode: AnnotationMode | None = Field(
        default=None,
        description="What the annotations hold, as `mlcore validate` detected it (placeholder {{annotation_mode}}): "
        "detection_only, segmentation_only or detection_and_segmentation.",
    )

    @model_validator(mode="after")
    def _classes_agree(self) -> DatasetSection:
        names = self.class_names
        if names is not None:
            if any(not name.strip() for name in names):
                raise ValueError("class_names contains an empty name")
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"class_names has duplicates: {', '.join(duplicates)}")
            if self.num_classes is not None and self.num_classes != len(names):
                raise ValueError(
                    f"num_classes is {self.num_classes} but class_names lists {len(names)} names; make them agree"
                )
        return self
