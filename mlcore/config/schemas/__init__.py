"""Pydantic schemas of every config kind, and the plain-dict registry that maps a file's `kind:` to its schema."""

from __future__ import annotations

from pydantic import BaseModel

from mlcore.config.schemas.common import ConfigModel, DatasetSection
from mlcore.config.schemas.data import AugmentationConfig, PreprocessingConfig
from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig, KdSegmentationOnlyConfig
from mlcore.config.schemas.optimization import QuantizationConfig, TensorRTConfig
from mlcore.config.schemas.students import StudentFastSamConfig, StudentYolov8Config, StudentYolov8SegConfig
from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig

# A new kind is one line here plus `<kind>.template.yaml` in mlcore/resources/templates.
CONFIG_SCHEMAS: dict[str, type[BaseModel]] = {
    "teacher_grounding_dino_lora": TeacherGroundingDinoLoraConfig,
    "teacher_sam_lora": TeacherSamLoraConfig,
    "student_yolov8": StudentYolov8Config,
    "student_yolov8_seg": StudentYolov8SegConfig,
    "student_fastsam": StudentFastSamConfig,
    "kd_detection_only": KdDetectionOnlyConfig,
    "kd_segmentation_only": KdSegmentationOnlyConfig,
    "kd_both": KdBothConfig,
    "training_dynamics": TrainingDynamicsConfig,
    "checkpoint_config": CheckpointConfig,
    "preprocessing": PreprocessingConfig,
    "augmentation": AugmentationConfig,
    "quantization": QuantizationConfig,
    "tensorrt": TensorRTConfig,
}

__all__ = [
    "CONFIG_SCHEMAS",
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
]
