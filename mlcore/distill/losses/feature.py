"""The feature component: student neck features, through 1x1 adapters, match the teacher's image features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlcore.errors import ConfigError


def feature_distillation_loss(student_features: Sequence[torch.Tensor], teacher_features: torch.Tensor,
                              valid: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean over layers of the MSE between adapted student and teacher features on valid cells.

    student_features: per layer (B, C, h, w), already through the adapters; teacher_features (B, C, H, W) spanning
    the student input, resized bilinearly (antialiased when shrinking) to each layer's size; valid (B, 1, H, W),
    resized nearest. The teacher's feature scale is arbitrary (and differs between teachers), so both sides are
    standardised over channels per cell (zero mean, unit variance, as a LayerNorm without affine): the MSE is then
    2 * (1 - correlation) per cell, about 2 for unrelated features, whatever the teacher's scale. Returns the mean
    and the per-layer values.
    """
    per_layer = []
    teacher_features = teacher_features.float()
    for student in student_features:
        size = tuple(student.shape[-2:])
        teacher = teacher_features
        if tuple(teacher.shape[-2:]) != size:
            shrinking = teacher.shape[-2] > size[0] or teacher.shape[-1] > size[1]
            teacher = F.interpolate(teacher, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
        if valid is None:
            cells = torch.ones_like(teacher[:, :1])
        else:
            cells = F.interpolate(valid.float(), size=size, mode="nearest-exact")
        error = (_standardise_channels(student.float()) - _standardise_channels(teacher)).pow(2).mean(1, keepdim=True)
        per_layer.append((error * cells).sum() / cells.sum().clamp(min=1))
    return torch.stack(per_layer).mean(), per_layer


def _standardise_channels(features: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(features.permute(0, 2, 3, 1), features.shape[1:2]).permute(0, 3, 1, 2)


class FeatureTap:
    """Forward hook keeping a layer's latest output (by reference, so gradients flow through the adapters)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.output = output

    def __deepcopy__(self, memo: dict) -> FeatureTap:
        return FeatureTap()  # a copied model (EMA) records into its own tap, never into the trainer's


def layer_channels(model: nn.Module, layers: Sequence[int]) -> dict[int, int]:
    """Output channels of the given layers, from one tiny no-grad forward in eval mode (no BatchNorm update)."""
    count = len(model.model)
    for layer in layers:
        if not 0 <= layer < count - 1:
            raise ConfigError(f"layer {layer} is not a student layer before the head (0-{count - 2})",
                              where="losses.feature_distillation_loss.layers",
                              fix="use YOLOv8's neck outputs 15, 18, 21 (P3, P4, P5)")
    seen: dict[int, int] = {}
    handles = [model.model[layer].register_forward_hook(
        lambda module, inputs, output, layer=layer: seen.__setitem__(layer, int(output.shape[1])))
        for layer in layers]
    parameter = next(model.parameters())
    was_training = model.training
    size = int(max(64, 2 * float(model.model[-1].stride.max())))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {layer: seen[layer] for layer in layers}


def channel_error(teacher_channels: int, adapter_channels: int) -> ConfigError:
    return ConfigError(
        f"the teacher features have {teacher_channels} channels but losses.feature_distillation_loss.adapter_channels "
        f"is {adapter_channels}", where="losses.feature_distillation_loss.adapter_channels",
        fix=f"set adapter_channels to {teacher_channels}")
