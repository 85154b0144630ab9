"""Grounding DINO's frozen stages: which they are, kept in eval mode, and one padded canvas for a whole run.

With LoRA on the decoder only, everything before it is a pure function of (image, prompt chunk): what lets
`DinoFeatureCache` run it once per image, and what makes a training step's loss independent of its batch mates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlcore.preprocess import PreprocessMeta, SingleModelPreprocessor
from mlcore.teachers.grounding_dino import _detector

# The transformers GroundingDinoModel submodules whose outputs the cache replaces (or that only feed them).
FROZEN_STAGES = ("backbone", "input_proj_vision", "text_backbone", "text_projection", "encoder")
FROZEN_PARAMETERS = ("level_embed",)


def frozen_stage_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of everything the cache stands in for, as named in the transformers model."""
    base = _detector(model).model
    found = [(f"model.{stage}.{name}", p) for stage in FROZEN_STAGES for name, p in
             getattr(base, stage).named_parameters()]
    return found + [(f"model.{name}", getattr(base, name)) for name in FROZEN_PARAMETERS]


def trainable_outside_decoder(model: nn.Module) -> list[str]:
    """Names of trainable parameters inside the cached stages: any one makes the cache invalid."""
    return [name for name, parameter in frozen_stage_parameters(model) if parameter.requires_grad]


def _stay_in_eval(module: nn.Module, _inputs: object) -> None:
    module.eval()


def keep_frozen_stages_in_eval(model: nn.Module) -> None:
    """Dropout and drop-path off in the frozen stages for good (model.train() included).

    Random noise on frozen features trains nothing, and it would make their output differ from the cached one. Only
    call this when `trainable_outside_decoder` is empty. Idempotent.
    """
    base = _detector(model).model
    for stage in FROZEN_STAGES:
        module = getattr(base, stage)
        module.eval()
        if not getattr(module, "_mlcore_stays_in_eval", False):
            module.register_forward_pre_hook(_stay_in_eval)
            module._mlcore_stays_in_eval = True


def pad_to_canvas(pixel_values: torch.Tensor, metas: Sequence[PreprocessMeta], canvas: tuple[int, int],
                  preprocessor: SingleModelPreprocessor) -> tuple[torch.Tensor, list[PreprocessMeta]]:
    """A preprocessed batch padded further (bottom, right) to the run's fixed canvas, as the preprocessor pads."""
    height, width = canvas
    fill = float(preprocessor.config.pad_value * preprocessor.config.rescale_factor)
    padded = F.pad(pixel_values, (0, width - pixel_values.shape[-1], 0, height - pixel_values.shape[-2]), value=fill)
    return padded, [meta.padded_to(canvas) for meta in metas]


def dataset_canvas(preprocessor: SingleModelPreprocessor, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The smallest (height, width) holding every image of `sizes` (original height, width) once resized."""
    inputs = [preprocessor.plan(height, width).input_size for height, width in sizes]
    return max(size[0] for size in inputs), max(size[1] for size in inputs)
