"""The teachers: Grounding DINO (boxes from class names) and SAM (masks from boxes), adapted with LoRA.

- `load_grounding_dino(preset, weights_dir)` / `load_sam(...)` -> `Teacher` (presets in `presets.py`: `tiny` with
  seeded random weights, or full-size from `<models dir>/<folder>/`, never from the network; `Teacher.base_weights`
  says which weights: repository, revision, sha256).
- `apply_lora_to_grounding_dino` / `apply_lora_to_sam` -> PeftModel; `verify_lora_freezing` -> `LoraReport` (or
  ModelError over 2 %); `merge_lora_weights` for inference.
- `save_adapter` / `load_adapter`: adapters alone, with metadata, a checksum and their base's identity (another base
  is refused).
- `GroundedSAM.from_pretrained(teachers_dir, mode_config).predict(images)` -> `TeacherPrediction` per image.
"""

from __future__ import annotations

from mlcore.teachers.adapters import AdapterMetadata, load_adapter, read_adapter_metadata, save_adapter
from mlcore.teachers.grounded_sam import GroundedSAM
from mlcore.teachers.grounding_dino import load_grounding_dino, patch_grounding_dino_for_peft
from mlcore.teachers.lora import (
    LoraReport,
    apply_lora_to_grounding_dino,
    apply_lora_to_sam,
    merge_lora_weights,
    verify_lora_freezing,
)
from mlcore.teachers.presets import GROUNDING_DINO_PRESETS, SAM_PRESETS, TeacherPreset, get_preset
from mlcore.teachers.prompts import PromptChunk, build_prompt_chunks
from mlcore.teachers.sam import load_sam
from mlcore.teachers.types import Teacher, TeacherPrediction

__all__ = [
    "GROUNDING_DINO_PRESETS",
    "SAM_PRESETS",
    "AdapterMetadata",
    "GroundedSAM",
    "LoraReport",
    "PromptChunk",
    "Teacher",
    "TeacherPrediction",
    "TeacherPreset",
    "apply_lora_to_grounding_dino",
    "apply_lora_to_sam",
    "build_prompt_chunks",
    "get_preset",
    "load_adapter",
    "load_grounding_dino",
    "load_sam",
    "merge_lora_weights",
    "patch_grounding_dino_for_peft",
    "read_adapter_metadata",
    "save_adapter",
    "verify_lora_freezing",
]
