"""The student's loss: the enabled components of the config, weighted, on one assignment per batch.

    criterion = DistillationLoss(model, kd.losses, num_classes=3, teacher_channels=256)   # hooks the neck layers
    breakdown = criterion(model(batch.images), batch)        # LossBreakdown(total, components, terms, skipped)

What differs from ultralytics' `v8DetectionLoss`: GIoU instead of CIoU, config sub-weights instead of the box/cls/dfl
gains, soft teacher targets and the distillation terms. The loss is a per-batch mean, not multiplied by the batch
size as ultralytics does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlcore.config.schemas.distillation import KdLosses
from mlcore.distill.geometry import boxes_from_masks
from mlcore.distill.losses.assignment import assign_targets, head_outputs, new_assigner
from mlcore.distill.losses.detection import detection_loss
from mlcore.distill.losses.feature import FeatureTap, channel_error, feature_distillation_loss, layer_channels
from mlcore.distill.losses.logit import logit_distillation_loss, scored_anchors
from mlcore.distill.losses.segmentation import segmentation_loss
from mlcore.distill.records import StudentBatch
from mlcore.errors import ModelError
from mlcore.logs import get_logger

LOG = get_logger(__name__)


@dataclass
class LossBreakdown:
    """total: the scalar to backpropagate; components: {name: weighted scalar} for the components that ran;
    terms: {"component/sub-term": unweighted float} for logging; skipped: {component: reason} for enabled ones."""

    total: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudentHead:
    """What the loss needs to know about the student's head."""

    num_classes: int
    strides: tuple[float, ...]
    reg_max: int
    has_masks: bool


def compute_distillation_loss(preds: Any, batch: StudentBatch, losses: KdLosses, head: StudentHead, *,
                              assigner: Any = None, adapted_features: Sequence[torch.Tensor] | None = None
                              ) -> LossBreakdown:
    """Every enabled component of `losses` on `preds` (the head's train- or eval-mode output) against `batch`.

    adapted_features: the hooked student layers through their adapters (the feature component; None skips it).
    """
    preds = head_outputs(preds)
    components: dict[str, torch.Tensor] = {}
    terms: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}

    def add(name: str, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        components[name] = loss
        terms.update({f"{name}/{key}": value for key, value in parts.items()})

    seg_reason = _segmentation_blocker(head, batch)
    seg_runs = losses.segmentation_loss.enabled and seg_reason is None
    boxes_from_mask_targets = seg_runs and not losses.detection_loss.enabled
    assignment = None
    if losses.detection_loss.enabled or seg_runs or losses.logit_distillation_loss.enabled:
        boxes = boxes_from_masks(batch.masks) if boxes_from_mask_targets else batch.boxes
        assignment = assign_targets(preds, boxes, batch.class_ids, batch.batch_idx,
                                    assigner=assigner or new_assigner(head.num_classes, head.strides),
                                    strides=head.strides, reg_max=head.reg_max)

    detection = losses.detection_loss
    if detection.enabled:
        loss, parts = detection_loss(assignment, giou_weight=detection.giou_weight, ce_weight=detection.ce_weight)
        add("detection", detection.weight * loss, parts)
    if losses.segmentation_loss.enabled:
        if seg_reason is not None:
            skipped["segmentation"] = seg_reason
        else:
            section = losses.segmentation_loss
            proto = preds["proto"][0] if isinstance(preds["proto"], tuple) else preds["proto"]
            loss, parts = segmentation_loss(
                assignment, batch.masks, preds["mask_coefficient"].permute(0, 2, 1), proto,
                bce_weight=section.bce_weight, dice_weight=section.dice_weight,
                detection_weights=(detection.giou_weight, detection.ce_weight) if boxes_from_mask_targets else None)
            add("segmentation", section.weight * loss, parts)
    if losses.logit_distillation_loss.enabled:
        student, teacher = scored_anchors(assignment, batch.soft_scores)
        if not len(student):
            skipped["logit"] = "no foreground anchor is assigned to an object with teacher class scores"
        else:
            section = losses.logit_distillation_loss
            kl = logit_distillation_loss(student, teacher, section.temperature)
            add("logit", section.weight * kl, {"kl": kl})
    if losses.feature_distillation_loss.enabled:
        reason = _feature_blocker(batch, adapted_features)
        if reason is not None:
            skipped["feature"] = reason
        else:
            section = losses.feature_distillation_loss
            if batch.teacher_features.shape[1] != section.adapter_channels:
                raise channel_error(int(batch.teacher_features.shape[1]), section.adapter_channels)
            loss, per_layer = feature_distillation_loss(adapted_features, batch.teacher_features, batch.feature_valid)
            parts = {f"layer{layer}": value for layer, value in zip(section.layers, per_layer)}
            add("feature", section.weight * loss, {"mse": loss, **parts})

    total = sum(components.values()) if components else preds["scores"].sum() * 0.0
    values = torch.stack([value.detach().float() for value in terms.values()]).tolist() if terms else []
    return LossBreakdown(total=total, components=components, terms=dict(zip(terms, values)), skipped=skipped)


def _segmentation_blocker(head: StudentHead, batch: StudentBatch) -> str | None:
    if not head.has_masks:
        return "the student has no mask head (a detection model); use a -seg student to learn masks"
    if batch.masks is None:
        return "this batch has no masks"
    return None


def _feature_blocker(batch: StudentBatch, adapted_features: Sequence[torch.Tensor] | None) -> str | None:
    if batch.teacher_features is None:
        return "this batch has no teacher features"
    if batch.feature_valid is not None and not bool(batch.feature_valid.any()):
        return "no teacher feature cell is valid in this batch"
    if not adapted_features:
        return "no student layer is hooked for features"
    return None


class DistillationLoss(nn.Module):
    """`compute_distillation_loss` for one student: owns the assigner, the feature adapters and their hooks.

    The adapters are 1x1 convs from each hooked student layer to adapter_channels: give this module's parameters to the
    optimizer too. The hooks stay on the model until `detach()`; remove them before pickling the model (an
    ultralytics checkpoint), or the pickle will reference this module.
    """

    def __init__(self, model: nn.Module, losses: KdLosses, *, num_classes: int,
                 teacher_channels: int | None = None) -> None:
        super().__init__()
        head = model.model[-1]
        if int(head.nc) != num_classes:
            raise ModelError(f"the student's head predicts {head.nc} classes, the class mapping has {num_classes}",
                             where="student model", fix="build the student with the mode config's class count")
        self.losses = losses
        self.head = StudentHead(num_classes=num_classes, strides=tuple(float(stride) for stride in head.stride),
                                reg_max=int(head.reg_max), has_masks=hasattr(head, "nm") and hasattr(head, "proto"))
        self.assigner = new_assigner(num_classes, self.head.strides)
        self._taps: dict[int, FeatureTap] = {}
        self._handles: list[Any] = []
        self._logged: set[tuple[str, str]] = set()
        features = losses.feature_distillation_loss
        self.adapters = nn.ModuleDict()
        if features.enabled:
            if teacher_channels is not None and teacher_channels != features.adapter_channels:
                raise channel_error(teacher_channels, features.adapter_channels)
            for layer, channels in layer_channels(model, features.layers).items():
                self.adapters[str(layer)] = nn.Conv2d(channels, features.adapter_channels, kernel_size=1)
            self.attach(model)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def attach(self, model: nn.Module) -> None:
        """Hook the feature layers of `model` (again: earlier hooks are removed); a no-op without feature loss."""
        self.detach()
        for layer in (self.losses.feature_distillation_loss.layers if len(self.adapters) else []):
            tap = FeatureTap()
            self._handles.append(model.model[layer].register_forward_hook(tap))
            self._taps[layer] = tap

    def detach(self) -> None:
        """Remove the hooks (before saving or pickling the model)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._taps = [], {}

    def forward(self, preds: dict[str, Any] | tuple, batch: StudentBatch) -> LossBreakdown:
        adapted = None
        if self._taps and batch.teacher_features is not None:
            adapted = [self.adapters[str(layer)](self._recorded(layer, tap)) for layer, tap in self._taps.items()]
        breakdown = compute_distillation_loss(preds, batch, self.losses, self.head, assigner=self.assigner,
                                              adapted_features=adapted)
        for tap in self._taps.values():
            tap.output = None  # a feature map is used by its own batch only, never by a later one
        for name, reason in breakdown.skipped.items():
            if (name, reason) not in self._logged:
                self._logged.add((name, reason))
                LOG.info("loss component %r skipped: %s (logged once)", name, reason)
        return breakdown

    @staticmethod
    def _recorded(layer: int, tap: FeatureTap) -> torch.Tensor:
        if tap.output is None:
            raise RuntimeError(f"no output recorded from student layer {layer}: call attach(model) and run the "
                               "model forward before the loss")
        return tap.output
