"""Configuration: commented YAML templates validated by pydantic schemas, with env substitution and inheritance.

`load_config("x.yaml")` returns the typed model for the file's `kind:`; every problem is reported as a ConfigError
that names the file, the key path and the fix.
"""

from __future__ import annotations

from mlcore.config.loader import dump_config, load_config, load_config_data, render_template, schema_for
from mlcore.config.schemas import (
    CONFIG_SCHEMAS,
    AugmentationConfig,
    CheckpointConfig,
    ConfigModel,
    DatasetSection,
    KdBothConfig,
    KdDetectionOnlyConfig,
    KdSegmentationOnlyConfig,
    PreprocessingConfig,
    QuantizationConfig,
    StudentFastSamConfig,
    StudentYolov8Config,
    StudentYolov8SegConfig,
    TeacherGroundingDinoLoraConfig,
    TeacherSamLoraConfig,
    TensorRTConfig,
    TrainingDynamicsConfig,
)
from mlcore.config.templates import PLACEHOLDERS, templates_dir

__all__ = [
    "CONFIG_SCHEMAS",
    "PLACEHOLDERS",
    "AugmentationConfig",
    "CheckpointConfig",
    "ConfigModel",
    "DatasetSection",
    "KdBothConfig",
    "KdDetectionOnlyConfig",
    "KdSegmentationOnlyConfig",
    "PreprocessingConfig",
    "QuantizationConfig",
    "StudentFastSamConfig",
    "StudentYolov8Config",
    "StudentYolov8SegConfig",
    "TeacherGroundingDinoLoraConfig",
    "TeacherSamLoraConfig",
    "TensorRTConfig",
    "TrainingDynamicsConfig",
    "dump_config",
    "load_config",
    "load_config_data",
    "render_template",
    "schema_for",
    "templates_dir",
]
