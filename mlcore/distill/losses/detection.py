"""The box component: GIoU + class BCE + DFL on the shared assignment (ultralytics' detection loss, GIoU for CIoU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcore.students.ultralytics_setup import configure_ultralytics

configure_ultralytics()  # before ultralytics' first import: its offline settings and files stay in mlcore's home
from ultralytics.utils.loss import DFLoss  # noqa: E402
from ultralytics.utils.metrics import bbox_iou  # noqa: E402
from ultralytics.utils.tal import bbox2dist  # noqa: E402

from mlcore.distill.losses.assignment import Assignment

# ultralytics' default gains are box 7.5, dfl 1.5: DFL is the distribution half of the box regression, so it follows
# the GIoU sub-weight at that ratio.
DFL_PER_GIOU = 1.5 / 7.5


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
