"""The records teachers hand on: a loaded teacher (model + what it needs around it) and one image's prediction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlcore.preprocess import SingleModelPreprocessor, for_model
from mlcore.teachers.adapter_metadata import AdapterMetadata
from mlcore.teachers.presets import Family, TeacherPreset
from mlcore.teachers.weights import BaseWeights, random_base, read_base_weights


@dataclass
class Teacher:
    """A teacher model with its preset, tokenizer (Grounding DINO) and, once adapted, its adapter metadata.

    `model` is the transformers model, a PeftModel after `apply_lora_*` / `load_adapter`, or the merged base after
    `merge_lora_weights`. `weights` says where the base weights came from: a folder, or "random_init"; `base` which
    weights they are (repository, revision, sha256). `checkpoint_preprocessing`: what the folder's
    preprocessor_config.json changes against the preset's inputs (used by `preprocessing()`).
    """

    family: Family
    preset: TeacherPreset
    model: nn.Module
    tokenizer: Any | None = None
    weights: str = "random_init"
    adapter: AdapterMetadata | None = None
    base: BaseWeights | None = None
    checkpoint_preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def random_init(self) -> bool:
        return self.weights == "random_init"

    @property
    def base_weights(self) -> BaseWeights:
        """Which base weights this is (the loaders set it; a Teacher built by hand is identified on first use)."""
        if self.base is None:
            self.base = (random_base(self.preset) if self.random_init
                         else read_base_weights(Path(self.weights), self.preset))
        return self.base

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing section this model needs: the preset's, then its checkpoint's preprocessor_config.json.
        SAM's input size comes from the model's own config, so a folder holding another size than its preset says
        still gets matching inputs."""
        section = {**self.preset.preprocessing, **self.checkpoint_preprocessing}
        if self.family == "sam":
            size = int(_base_config(self.model).vision_config.image_size)
            return {**section, "longest_edge": size, "pad_to": [size, size]}
        return section

    def preprocessor(self) -> SingleModelPreprocessor:
        return for_model(self.family, {self.family: self.preprocessing()})


def _base_config(model: nn.Module) -> Any:
    # PeftModel and the merged model both expose the transformers config.
    return model.config if not hasattr(model, "get_base_model") else model.get_base_model().config


@dataclass
class TeacherPrediction:
    """One image's teacher labels, in the ORIGINAL image's pixel frame (x1, y1, x2, y2; continuous coordinates).

    boxes (n, 4) float32; scores (n,) float32 (Grounding DINO's phrase score, 1.0 for given boxes); class_ids (n,)
    int64 contiguous class indices of the mode config (-1 for given boxes without classes); masks (n, H, W) bool
    or None when SAM is not active; mask_scores (n,) SAM's predicted IoU or None. features: filled by
    `predict(..., extract_features=True)`, see `GroundedSAM.predict` for the keys.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    image_size: tuple[int, int]  # height, width of the original image
    masks: torch.Tensor | None = None
    mask_scores: torch.Tensor | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: str | torch.device) -> TeacherPrediction:
        def move(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.to(device)

        return TeacherPrediction(boxes=self.boxes.to(device), scores=self.scores.to(device),
                                 class_ids=self.class_ids.to(device), image_size=self.image_size,
                                 masks=move(self.masks), mask_scores=move(self.mask_scores),
                                 features={key: value.to(device) for key, value in self.features.items()})
