"""How big Grounding DINO's frozen-stage cache gets, from the model config alone: no image is run.

A stored (image, prompt chunk) pair is the fusion encoder's vision output (d_model values at every position of every
feature level of the run's canvas), its text output (d_model values per prompt token) and a small container. The
sizes are what `DinoFeatureCache` logs before filling and holds to its budget (`cache.max_gb`).
"""

from __future__ import annotations

import math

import torch
from transformers import GroundingDinoConfig

DEFAULT_MAX_GB = 50.0  # a workstation disk's spare room; `cache.max_gb` of teacher_grounding_dino_lora
RECORD_OVERHEAD_BYTES = 1_900  # torch.save's zip container, the level list, tensor headers (measured: 1,829 B)
GB = 1e9


def feature_level_shapes(config: GroundingDinoConfig, canvas: tuple[int, int]) -> list[tuple[int, int]] | None:
    """(height, width) of each feature level the encoder sees for a canvas, from the config alone (None for a
    backbone other than transformers' Swin). Swin: patch embedding ceil(x / patch), each later stage ceil(x / 2)
    (odd sizes are padded), the levels are the `out_indices` stages; each extra level is a stride-2 3x3 conv on the
    previous one, ceil(x / 2) again."""
    backbone = config.backbone_config
    if getattr(config, "use_timm_backbone", False) or getattr(backbone, "model_type", None) != "swin":
        return None
    height, width = math.ceil(canvas[0] / backbone.patch_size), math.ceil(canvas[1] / backbone.patch_size)
    shapes = []
    for stage in range(1, len(backbone.depths) + 1):
        if stage > 1:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        if stage in backbone.out_indices:
            shapes.append((height, width))
    while len(shapes) < config.num_feature_levels:
        height, width = math.ceil(shapes[-1][0] / 2), math.ceil(shapes[-1][1] / 2)
        shapes.append((height, width))
    return shapes


def vision_positions(config: GroundingDinoConfig, canvas: tuple[int, int]) -> int | None:
    """Positions of the encoder's vision output for a canvas: the sum over its feature levels (None: not Swin)."""
    shapes = feature_level_shapes(config, canvas)
    return None if shapes is None else sum(height * width for height, width in shapes)


def record_bytes(positions: int, tokens: int, d_model: int, dtype: torch.dtype) -> int:
    """Bytes of one stored pair: (vision positions + prompt tokens) x d_model values of the dtype, plus container."""
    return (positions + tokens) * d_model * torch.empty((), dtype=dtype).element_size() + RECORD_OVERHEAD_BYTES


def readable_size(count: float) -> str:
    return f"{count / GB:.1f} GB" if count >= GB / 10 else f"{count / 1e6:.1f} MB"
