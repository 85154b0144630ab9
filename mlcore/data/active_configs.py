"""`validate --generate-configs`: the active configs a dataset's mode needs, filled with that dataset's facts.

Written under configs/{training,distillation,optimization}/ (git-ignored: they are the user's), one file per kind,
from the commented templates, so the comments travel with the values. Existing files are kept: they may hold edits.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlcore.config.loader import render_template
from mlcore.data.mode_config import ModeConfig
from mlcore.io import write_text_atomic

log = logging.getLogger(__name__)

STUDENT_KIND = {"yolov8n": "student_yolov8", "yolov8n-seg": "student_yolov8_seg", "fastsam": "student_fastsam"}
TEACHER_KIND = {"grounding_dino": "teacher_grounding_dino_lora", "sam": "teacher_sam_lora"}


def active_config_kinds(mode_config: ModeConfig) -> dict[str, list[str]]:
    """Folder -> kinds that this dataset's mode needs (teachers and student from the mode's recommendations)."""
    return {
        "training": [TEACHER_KIND[t] for t in mode_config.recommended_teachers]
        + ["training_dynamics", "checkpoint_config", "preprocessing", "augmentation"],
        "distillation": [STUDENT_KIND[mode_config.recommended_student], mode_config.distillation_config.template],
        "optimization": ["quantization", "tensorrt"],
    }


def write_active_configs(mode_config: ModeConfig, splits: dict[str, str], configs_dir: Path,
                         overwrite: bool = False) -> list[Path]:
    values = {
        "class_names": mode_config.class_names,
        "num_classes": mode_config.num_classes,
        "annotation_mode": mode_config.annotation_mode,
        "dataset_train": splits.get("train", mode_config.dataset),  # without a split: the whole cleaned copy
        "dataset_val": splits.get("val"),
        "dataset_train_images": mode_config.images_root,
        "dataset_val_images": mode_config.images_root,
    }
    written = []
    for folder, kinds in active_config_kinds(mode_config).items():
        for kind in kinds:
            path = configs_dir / folder / f"{kind}.yaml"
            if path.exists() and not overwrite:
                log.warning("keeping %s (it exists and may hold your edits; --overwrite-configs replaces it)", path)
                continue
            write_text_atomic(path, render_template(kind, values))
            written.append(path)
    return written
