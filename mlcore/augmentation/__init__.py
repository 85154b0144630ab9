"""Characteristic-based augmentation: describe the objects and the scene, get an albumentations 2.x pipeline.

    from mlcore.augmentation import get_pipeline
    pipeline = get_pipeline(["reflective_surface"], {"lighting": "poor"}, intensity="medium", seed=0)
    sample = pipeline(image, boxes_xywh, labels, masks)   # boxes, labels and masks stay aligned

The rule table (rules.py) says which transforms each option adds; `get_pipeline_info` shows the merged result.
"""

from __future__ import annotations

from mlcore.augmentation.registry import AUGMENTATIONS, AugmentationRegistry
from mlcore.augmentation.translator import PipelineInfo, PlannedTransform

get_pipeline = AUGMENTATIONS.get_pipeline
get_pipeline_info = AUGMENTATIONS.get_pipeline_info
get_available_characteristics = AUGMENTATIONS.get_available_characteristics
get_available_environments = AUGMENTATIONS.get_available_environments
pipeline_from_config = AUGMENTATIONS.from_config

__all__ = [
    "AUGMENTATIONS",
    "AugmentationRegistry",
    "PipelineInfo",
    "PlannedTransform",
    "get_available_characteristics",
    "get_available_environments",
    "get_pipeline",
    "get_pipeline_info",
    "pipeline_from_config",
]
