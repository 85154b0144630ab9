"""Distillation losses: the student's training signal, one component per config section, on one shared assignment.

    criterion = DistillationLoss(model, kd.losses, num_classes=3, teacher_channels=256)   # hooks the neck layers
    breakdown = criterion(model(batch.images), batch)        # LossBreakdown(total, components, terms, skipped)

Every component reads the same TaskAlignedAssigner pass (ultralytics' YOLOv8 assigner, same settings), so the
box, class, mask and soft-score targets of an anchor always refer to the same object. The pieces come from
ultralytics 8.4 (assigner, anchors, box <-> distance maps, GIoU, DFL, mask cropping); what differs from
`v8DetectionLoss` is GIoU instead of CIoU, config sub-weights instead of the box/cls/dfl gains, soft teacher targets
and the distillation terms. The loss is a per-batch mean, not multiplied by the batch size as ultralytics does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlcore.students.ultralytics_setup import configure_ultralytics

configure_ultralytics()  # before ultralytics' first import: its offline settings and files stay in mlcore's home
from ultralytics.utils.loss import DFLoss  # noqa: E402
from ultralytics.utils.metrics import bbox_iou  # noqa: E402
from ultralytics.utils.ops import crop_mask  # noqa: E402
from ultralytics.utils.tal import TaskAlignedAssigner, bbox2dist, dist2bbox, make_anchors  # noqa: E402

from mlcore.config.schemas.distillation import KdLosses
from mlcore.errors import ConfigError, ModelError
from mlcore.logs import get_logger
from mlcore.training.kd_geometry import _boxes_from_masks, _resize_masks
from mlcore.training.kd_types import StudentBatch

LOG = get_logger(__name__)

# ultralytics' default gains are box 7.5, dfl 1.5: DFL is the distribution half of the box regression, so it follows
# the GIoU sub-weight at that ratio.
DFL_PER_GIOU = 1.5 / 7.5
# v8DetectionLoss's assigner settings.
ASSIGNER_TOPK, ASSIGNER_ALPHA, ASSIGNER_BETA = 10, 0.5, 6.0
# Teacher probabilities are clamped before the logit so a confident 0 or 1 gives a finite logit (|logit| <= 9.2).
PROBABILITY_EPS = 1e-4
DICE_SMOOTH = 1.0  # as ultralytics' BCEDiceLoss: an empty prediction on an empty target costs nothing


@dataclass
class LossBreakdown:
    """total: the scalar to backpropagate; components: {name: weighted scalar} for the components that ran;
    terms: {"component/sub-term": unweighted float} for logging; skipped: {component: reason} for enabled ones."""

    total: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Assignment:
    """One TaskAlignedAssigner pass over a batch: the predictions and, per anchor, the object it learns from.

    Boxes in grid units are divided by each anchor's stride (how the distribution head predicts them).
    """

    pred_scores: torch.Tensor  # (B, A, nc) class logits
    pred_dist: torch.Tensor  # (B, A, 4 * reg_max) box distribution logits
    pred_boxes: torch.Tensor  # (B, A, 4) decoded xyxy, grid units
    anchor_points: torch.Tensor  # (A, 2) anchor centres, grid units
    strides: torch.Tensor  # (A, 1) stride of each anchor
    target_boxes: torch.Tensor  # (B, A, 4) assigned object's xyxy, input pixels
    target_scores: torch.Tensor  # (B, A, nc) the assigner's soft one-hot (alignment-scaled) targets
    fg_mask: torch.Tensor  # (B, A) bool
    fg_object: torch.Tensor  # (B, A) int64 index into the batch's objects, -1 for background
    input_size: tuple[int, int]  # height, width of the student input
    reg_max: int

    @property
    def target_scores_sum(self) -> torch.Tensor:
        return self.target_scores.sum().clamp(min=1)


# -- assignment ---------------------------------------------------------------------------------------------------


def head_outputs(preds: Any) -> dict[str, Any]:
    """The raw training dict of a Detect/Segment head, from train mode (dict) or eval mode ((decoded, dict))."""
    if isinstance(preds, (tuple, list)):
        preds = preds[1]
    if "one2many" in preds:  # end-to-end heads: the one-to-many branch is the one trained with dense targets
        preds = preds["one2many"]
    return preds


def assign_targets(preds: dict[str, Any], boxes: torch.Tensor, class_ids: torch.Tensor, batch_idx: torch.Tensor,
                   *, assigner: TaskAlignedAssigner, strides: Sequence[float], reg_max: int) -> Assignment:
    """Decode the head's boxes and run the assigner once (as `v8DetectionLoss.get_assigned_targets_and_loss`).

    boxes (n, 4) xyxy input pixels; objects with an empty box (e.g. from an empty mask) take no anchors.
    """
    pred_dist = preds["boxes"].permute(0, 2, 1).float().contiguous()
    pred_scores = preds["scores"].permute(0, 2, 1).float().contiguous()
    feats = preds["feats"]
    anchor_points, stride_tensor = make_anchors(feats, strides, 0.5)
    anchor_points, stride_tensor = anchor_points.float(), stride_tensor.float()
    input_size = (int(feats[0].shape[2] * strides[0]), int(feats[0].shape[3] * strides[0]))
    pred_boxes = _decode_boxes(anchor_points, pred_dist, reg_max)
    batch_size = pred_scores.shape[0]

    gt_labels, gt_boxes, mask_gt, slot_object = _pad_objects(boxes.float(), class_ids, batch_idx, batch_size)
    _, target_boxes, target_scores, fg_mask, target_gt_idx = assigner(
        pred_scores.detach().sigmoid(), pred_boxes.detach() * stride_tensor, anchor_points * stride_tensor,
        gt_labels, gt_boxes, mask_gt)
    if slot_object.shape[1]:
        fg_object = torch.where(fg_mask, slot_object.gather(1, target_gt_idx.long()), -1)
    else:
        fg_object = torch.full(fg_mask.shape, -1, dtype=torch.long, device=fg_mask.device)
    return Assignment(pred_scores=pred_scores, pred_dist=pred_dist, pred_boxes=pred_boxes, anchor_points=anchor_points,
                      strides=stride_tensor, target_boxes=target_boxes, target_scores=target_scores.float(),
                      fg_mask=fg_mask, fg_object=fg_object, input_size=input_size, reg_max=reg_max)


def _decode_boxes(anchor_points: torch.Tensor, pred_dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """(B, A, 4 * reg_max) distribution logits -> (B, A, 4) xyxy grid units (the expected bin per side)."""
    if reg_max > 1:
        batch, anchors, _ = pred_dist.shape
        bins = torch.arange(reg_max, dtype=pred_dist.dtype, device=pred_dist.device)
        pred_dist = pred_dist.view(batch, anchors, 4, reg_max).softmax(3).matmul(bins)
    return dist2bbox(pred_dist, anchor_points, xywh=False)


def _pad_objects(boxes: torch.Tensor, class_ids: torch.Tensor, batch_idx: torch.Tensor, batch_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat objects -> per-image slots: labels (B, m, 1), boxes (B, m, 4), valid (B, m, 1), object index (B, m)."""
    device = boxes.device
    batch_idx = batch_idx.long().to(device)
    counts = torch.bincount(batch_idx, minlength=batch_size)
    slots = int(counts.max()) if batch_idx.numel() else 0
    labels = torch.zeros(batch_size, slots, 1, device=device)
    padded = torch.zeros(batch_size, slots, 4, device=device)
    slot_object = torch.full((batch_size, slots), -1, dtype=torch.long, device=device)
    if slots:
        order = torch.argsort(batch_idx, stable=True)
        starts = counts.cumsum(0) - counts
        image = batch_idx[order]
        within = torch.arange(len(order), device=device) - starts[image]
        labels[image, within, 0] = class_ids.to(device)[order].float()
        padded[image, within] = boxes[order]
        slot_object[image, within] = order
    has_area = (padded[..., 2] > padded[..., 0]) & (padded[..., 3] > padded[..., 1])
    return labels, padded, (has_area & (slot_object >= 0)).unsqueeze(-1).float(), slot_object


# -- components ---------------------------------------------------------------------------------------------------


def detection_loss(assignment: Assignment, *, giou_weight: float, ce_weight: float
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """giou_weight * GIoU + ce_weight * BCE + giou_weight * DFL_PER_GIOU * DFL, each normalised as ultralytics does.

    GIoU: (1 - GIoU) of each foreground anchor's box, weighted by its target score, over the target-score sum.
    Classification: YOLOv8 heads are multi-label sigmoid, so the cross-entropy is a BCE against the assigner's soft
    targets over every anchor and class (background anchors learn 0), over the target-score sum. DFL: the
    distribution head's Distribution Focal Loss on the same anchors and weights; it is part of the box regression,
    so it takes the GIoU sub-weight at ultralytics' dfl/box gain ratio (1.5 / 7.5). Returns the sub-weighted sum
    and the unweighted terms.
    """
    a = assignment
    scores_sum = a.target_scores_sum
    cls = F.binary_cross_entropy_with_logits(a.pred_scores, a.target_scores, reduction="none").sum() / scores_sum
    fg = a.fg_mask
    weight = a.target_scores[fg].sum(-1, keepdim=True)
    target_grid = a.target_boxes / a.strides
    giou = bbox_iou(a.pred_boxes[fg], target_grid[fg], xywh=False, GIoU=True)
    box = ((1.0 - giou) * weight).sum() / scores_sum
    if a.reg_max > 1:
        target_ltrb = bbox2dist(a.anchor_points, target_grid, a.reg_max - 1)
        dfl = DFLoss(a.reg_max)(a.pred_dist[fg].view(-1, a.reg_max), target_ltrb[fg])
        dfl = (dfl * weight).sum() / scores_sum
    else:
        dfl = a.pred_dist.sum() * 0.0
    loss = giou_weight * box + ce_weight * cls + giou_weight * DFL_PER_GIOU * dfl
    return loss, {"giou": box, "cls": cls, "dfl": dfl}


def segmentation_loss(assignment: Assignment, masks: torch.Tensor, coefficients: torch.Tensor, proto: torch.Tensor,
                      *, bce_weight: float, dice_weight: float,
                      detection_weights: tuple[float, float] | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """bce_weight * BCE + dice_weight * Dice of each foreground anchor's mask against its object's mask.

    The anchor's mask is its coefficients @ the image's prototypes (logits at the proto size, 1/4 of the input),
    cropped to the assigned object's box; the target is the object's mask area-resized to the proto size. BCE is the
    mean inside the box (ultralytics' per-area normalisation), Dice is computed inside the box; both are averaged
    over foreground anchors. Objects whose mask is empty (no mask known, or cropped away) are left out.

    masks (n, S, S) in the student input frame; coefficients (B, A, nm); proto (B, nm, h, w).
    detection_weights (giou_weight, ce_weight): when the box component is off (kd_segmentation_only, e.g. FastSAM)
    the student still has to find the instances before it can mask them, so the detection terms (GIoU, class BCE,
    DFL, weighted as in `detection_loss`) are added here as sub-terms, on the boxes the assignment was made with
    (tight boxes of the masks).
    """
    a = assignment
    mask_h, mask_w = proto.shape[-2:]
    targets = _resize_masks(masks, (mask_h, mask_w))
    has_mask = targets.flatten(1).sum(1) > 0
    fg = a.fg_mask & has_mask[a.fg_object.clamp(min=0)] if len(has_mask) else torch.zeros_like(a.fg_mask)
    to_proto = a.target_boxes.new_tensor([mask_w / a.input_size[1], mask_h / a.input_size[0]] * 2)
    bce_sum = dice_sum = proto.sum() * 0.0 + coefficients.sum() * 0.0  # keeps both in the graph when nothing is fg
    for image in range(fg.shape[0]):
        anchors = fg[image].nonzero(as_tuple=True)[0]
        if not len(anchors):
            continue
        logits = (coefficients[image, anchors].float() @ proto[image].float().flatten(1)).view(-1, mask_h, mask_w)
        target = targets[a.fg_object[image, anchors]]
        inside = crop_mask(torch.ones_like(logits), a.target_boxes[image, anchors] * to_proto)
        area = inside.sum((1, 2)).clamp(min=1)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        bce_sum = bce_sum + ((bce * inside).sum((1, 2)) / area).sum()
        probs, target = logits.sigmoid() * inside, target * inside
        dice = 1 - (2 * (probs * target).sum((1, 2)) + DICE_SMOOTH) / (probs.sum((1, 2)) + target.sum((1, 2))
                                                                        + DICE_SMOOTH)
        dice_sum = dice_sum + dice.sum()
    count = fg.sum().clamp(min=1)
    bce, dice = bce_sum / count, dice_sum / count
    loss = bce_weight * bce + dice_weight * dice
    terms = {"bce": bce, "dice": dice}
    if detection_weights is not None:
        giou_weight, ce_weight = detection_weights
        box_loss, box_terms = detection_loss(a, giou_weight=giou_weight, ce_weight=ce_weight)
        loss = loss + box_loss
        terms.update(box_terms)
    return loss, terms


def logit_distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                            temperature: float) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over rows (Hinton et al.).

    student_logits (n, C): the student's class logits at anchors assigned to teacher-scored objects; teacher_probs
    (n, C): the teacher's per-class probabilities there, turned into logits t = logit(clamp(p)). T^2 keeps the
    gradient scale independent of T. With one class a softmax is constant (the KL would always be 0), so the
    Bernoulli KL of sigmoid(t / T) against sigmoid(s / T) is used instead. n must be > 0 (the caller skips).
    """
    clamped = teacher_probs.float().clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    teacher, student = torch.logit(clamped) / temperature, student_logits.float() / temperature
    if teacher.shape[-1] == 1:
        teacher, student = torch.cat([teacher, -teacher], -1), torch.cat([student, -student], -1)
        teacher_log, student_log = F.logsigmoid(teacher), F.logsigmoid(student)  # log p, log (1 - p)
    else:
        teacher_log, student_log = F.log_softmax(teacher, dim=-1), F.log_softmax(student, dim=-1)
    return F.kl_div(student_log, teacher_log, reduction="batchmean", log_target=True) * temperature ** 2


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


# -- the module ---------------------------------------------------------------------------------------------------


class _FeatureTap:
    """Forward hook keeping a layer's latest output (by reference, so gradients flow through the adapters)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.output = output

    def __deepcopy__(self, memo: dict) -> _FeatureTap:
        return _FeatureTap()  # a copied model (EMA) records into its own tap, never into the trainer's


class DistillationLoss(nn.Module):
    """The mode-aware student loss: the enabled components of `losses`, weighted, from one assignment per batch.

    Owns the feature adapters (1x1 convs from each hooked student layer to adapter_channels): give this module's
    parameters to the optimizer too. The hooks stay on the model until `detach()`; remove them before pickling the
    model (an ultralytics checkpoint), or the pickle will reference this module.
    """

    def __init__(self, model: nn.Module, losses: KdLosses, *, num_classes: int,
                 teacher_channels: int | None = None) -> None:
        super().__init__()
        head = model.model[-1]
        if int(head.nc) != num_classes:
            raise ModelError(f"the student's head predicts {head.nc} classes, the class mapping has {num_classes}",
                             where="student model", fix="build the student with the mode config's class count")
        self.losses = losses
        self.num_classes = num_classes
        self.reg_max = int(head.reg_max)
        self.has_mask_head = hasattr(head, "nm") and hasattr(head, "proto")
        self.strides = [float(stride) for stride in head.stride]  # plain floats: no device to follow
        self.assigner = TaskAlignedAssigner(topk=ASSIGNER_TOPK, num_classes=num_classes, alpha=ASSIGNER_ALPHA,
                                            beta=ASSIGNER_BETA, stride=self.strides)
        self._taps: dict[int, _FeatureTap] = {}
        self._handles: list[Any] = []
        self._logged: set[tuple[str, str]] = set()
        features = losses.feature_distillation_loss
        self.adapters = nn.ModuleDict()
        if features.enabled:
            if teacher_channels is not None and teacher_channels != features.adapter_channels:
                raise _channel_error(teacher_channels, features.adapter_channels)
            for layer, channels in _layer_channels(model, features.layers).items():
                self.adapters[str(layer)] = nn.Conv2d(channels, features.adapter_channels, kernel_size=1)
            self.attach(model)

    def attach(self, model: nn.Module) -> None:
        """Hook the feature layers of `model` (again: earlier hooks are removed); a no-op without feature loss."""
        self.detach()
        for layer in (self.losses.feature_distillation_loss.layers if len(self.adapters) else []):
            tap = _FeatureTap()
            self._handles.append(model.model[layer].register_forward_hook(tap))
            self._taps[layer] = tap

    def detach(self) -> None:
        """Remove the hooks (before saving or pickling the model)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._taps = [], {}

    def forward(self, preds: dict[str, Any] | tuple, batch: StudentBatch) -> LossBreakdown:
        preds = head_outputs(preds)
        config = self.losses
        components: dict[str, torch.Tensor] = {}
        terms: dict[str, torch.Tensor] = {}
        skipped: dict[str, str] = {}

        seg_reason = self._segmentation_blocker(batch)
        seg_runs = config.segmentation_loss.enabled and seg_reason is None
        boxes_from_masks = seg_runs and not config.detection_loss.enabled
        assignment = None
        if config.detection_loss.enabled or seg_runs or config.logit_distillation_loss.enabled:
            boxes = _boxes_from_masks(batch.masks) if boxes_from_masks else batch.boxes
            assignment = assign_targets(preds, boxes, batch.class_ids, batch.batch_idx, assigner=self.assigner,
                                        strides=self.strides, reg_max=self.reg_max)

        if config.detection_loss.enabled:
            section = config.detection_loss
            loss, parts = detection_loss(assignment, giou_weight=section.giou_weight, ce_weight=section.ce_weight)
            self._add("detection", section.weight * loss, parts, components, terms)
        if config.segmentation_loss.enabled:
            if seg_reason is not None:
                self._skip("segmentation", seg_reason, skipped)
            else:
                section = config.segmentation_loss
                detection = config.detection_loss
                proto = preds["proto"][0] if isinstance(preds["proto"], tuple) else preds["proto"]
                loss, parts = segmentation_loss(
                    assignment, batch.masks, preds["mask_coefficient"].permute(0, 2, 1), proto,
                    bce_weight=section.bce_weight, dice_weight=section.dice_weight,
                    detection_weights=(detection.giou_weight, detection.ce_weight) if boxes_from_masks else None)
                self._add("segmentation", section.weight * loss, parts, components, terms)
        if config.logit_distillation_loss.enabled:
            student, teacher = _scored_anchors(assignment, batch.soft_scores)
            if not len(student):
                self._skip("logit", "no foreground anchor is assigned to an object with teacher class scores",
                           skipped)
            else:
                section = config.logit_distillation_loss
                kl = logit_distillation_loss(student, teacher, section.temperature)
                self._add("logit", section.weight * kl, {"kl": kl}, components, terms)
        if config.feature_distillation_loss.enabled:
            self._feature_component(batch, components, terms, skipped)
        for tap in self._taps.values():
            tap.output = None  # a feature map is used by its own batch only, never by a later one

        total = sum(components.values()) if components else preds["scores"].sum() * 0.0
        values = torch.stack([value.detach().float() for value in terms.values()]).tolist() if terms else []
        return LossBreakdown(total=total, components=components, terms=dict(zip(terms, values)), skipped=skipped)

    # -- helpers ----------------------------------------------------------------------------------------------------

    def _segmentation_blocker(self, batch: StudentBatch) -> str | None:
        if not self.has_mask_head:
            return "the student has no mask head (a detection model); use a -seg student to learn masks"
        if batch.masks is None:
            return "this batch has no masks"
        return None

    def _feature_component(self, batch: StudentBatch, components: dict, terms: dict, skipped: dict) -> None:
        if batch.teacher_features is None:
            self._skip("feature", "this batch has no teacher features", skipped)
            return
        if batch.feature_valid is not None and not bool(batch.feature_valid.any()):
            self._skip("feature", "no teacher feature cell is valid in this batch", skipped)
            return
        section = self.losses.feature_distillation_loss
        if batch.teacher_features.shape[1] != section.adapter_channels:
            raise _channel_error(int(batch.teacher_features.shape[1]), section.adapter_channels)
        adapted = []
        for layer, tap in self._taps.items():
            if tap.output is None:
                raise RuntimeError(f"no output recorded from student layer {layer}: call attach(model) and run the "
                                   "model forward before the loss")
            adapted.append(self.adapters[str(layer)](tap.output))
        loss, per_layer = feature_distillation_loss(adapted, batch.teacher_features, batch.feature_valid)
        parts = {f"layer{layer}": value for layer, value in zip(self._taps, per_layer)}
        self._add("feature", section.weight * loss, {"mse": loss, **parts}, components, terms)

    @staticmethod
    def _add(name: str, loss: torch.Tensor, parts: dict[str, torch.Tensor], components: dict, terms: dict) -> None:
        components[name] = loss
        terms.update({f"{name}/{key}": value for key, value in parts.items()})

    def _skip(self, name: str, reason: str, skipped: dict[str, str]) -> None:
        skipped[name] = reason
        if (name, reason) not in self._logged:
            self._logged.add((name, reason))
            LOG.info("loss component %r skipped: %s (logged once)", name, reason)


def _scored_anchors(assignment: Assignment, soft_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student class logits, teacher probabilities) at foreground anchors whose object has finite teacher scores."""
    a = assignment
    if soft_scores.shape[-1] != a.pred_scores.shape[-1]:
        raise ValueError(f"soft_scores have {soft_scores.shape[-1]} classes, the student {a.pred_scores.shape[-1]}")
    scored = torch.isfinite(soft_scores).all(-1) if len(soft_scores) else soft_scores.new_zeros(0, dtype=torch.bool)
    fg = a.fg_mask & scored[a.fg_object.clamp(min=0)] if len(scored) else torch.zeros_like(a.fg_mask)
    images, anchors = fg.nonzero(as_tuple=True)
    return a.pred_scores[images, anchors], soft_scores[a.fg_object[images, anchors]].to(a.pred_scores)


def _layer_channels(model: nn.Module, layers: Sequence[int]) -> dict[int, int]:
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


def _channel_error(teacher_channels: int, adapter_channels: int) -> ConfigError:
    return ConfigError(
        f"the teacher features have {teacher_channels} channels but losses.feature_distillation_loss.adapter_channels "
        f"is {adapter_channels}", where="losses.feature_distillation_loss.adapter_channels",
        fix=f"set adapter_channels to {teacher_channels}")



__all__ = [
    "Assignment",
    "DistillationLoss",
    "LossBreakdown",
    "assign_targets",
    "detection_loss",
    "feature_distillation_loss",
    "head_outputs",
    "logit_distillation_loss",
    "segmentation_loss",
]
