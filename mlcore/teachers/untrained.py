"""Adapter folders as LoRA starts them, for the teachers a mode needs: smoke runs, demos and tests without training.

PEFT initialises LoRA's B matrices at zero, so such an adapter computes exactly what its base model does; with the
tiny preset the base is a random network, which is enough to exercise labelling and distillation end to end.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlcore.data.mode_config import ModeConfig
from mlcore.teachers.adapters import save_adapter
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS
from mlcore.teachers.grounding_dino import load_grounding_dino
from mlcore.teachers.lora import apply_lora_to_grounding_dino, apply_lora_to_sam
from mlcore.teachers.sam import load_sam


def save_untrained_teachers(folder: str | os.PathLike[str], mode_config: ModeConfig, *, preset: str = "tiny"
                            ) -> Path:
    """Write `<folder>/grounding_dino_lora/` and/or `<folder>/sam_lora/` (what `train-teacher` would) untrained."""
    folder = Path(folder)
    for family in mode_config.recommended_teachers:
        if family == "grounding_dino":
            teacher = load_grounding_dino(preset)
            teacher.model = apply_lora_to_grounding_dino(teacher.model)
        else:
            teacher = load_sam(preset)
            teacher.model = apply_lora_to_sam(teacher.model)
        save_adapter(teacher, folder / TEACHER_FOLDERS[family], class_mapping=mode_config.class_mapping)
    return folder
