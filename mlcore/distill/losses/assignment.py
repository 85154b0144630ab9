"""One TaskAlignedAssigner pass per batch, shared by every loss component: which object each anchor learns from.

The pieces come from ultralytics 8.4 (assigner, anchors, box <-> distance maps), with `v8DetectionLoss`'s settings, so
the box, class, mask and soft-score targets of an anchor always refer to the same object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mlcore.students.ultralytics_setup import configure_ultralytics

configure_ultralytics()  # before ultralytics' first import: its offline settings and files stay in mlcore's home
from ultralytics.utils.tal import TaskAlignedAssigner, dist2bbox, make_anchors  # noqa: E402

# v8DetectionLoss's assigner settings.
ASSIGNER_TOPK, ASSIGNER_ALPHA, ASSIGNER_BETA = 10, 0.5, 6.0


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


def new_assigner(num_classes: int, strides: Sequence[float]) -> TaskAlignedAssigner:
    return TaskAlignedAssigner(topk=ASSIGNER_TOPK, num_classes=num_classes, alpha=ASSIGNER_ALPHA, beta=ASSIGNER_BETA,
                               stride=list(strides))
