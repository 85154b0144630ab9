"""The mask component: BCE + Dice of each foreground anchor's prototype mask against its object's mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcore.students.ultralytics_setup import configure_ultralytics

configure_ultralytics()  # before ultralytics' first import: its offline settings and files stay in mlcore's home
from ultralytics.utils.ops import crop_mask  # noqa: E402

from mlcore.distill.geometry import resize_masks
from mlcore.distill.losses.assignment import Assignment
from mlcore.distill.losses.detection import detection_loss

DICE_SMOOTH = 1.0  # as ultralytics' BCEDiceLoss: an empty prediction on an empty target costs nothing


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
    targets = resize_masks(masks, (mask_h, mask_w))
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
