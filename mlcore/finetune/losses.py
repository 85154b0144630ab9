"""What the teachers learn from: a sample's objects as Grounding DINO labels, and SAM's mask loss.

Which objects an image has to learn from is `mlcore.data.objects.sample_objects`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlcore.config.schemas.teachers import SamLossWeights
from mlcore.data.objects import Objects
from mlcore.preprocess import PreprocessMeta
from mlcore.teachers.prompts import PromptChunk

CLASS_LABEL_MAPS = "class_label_maps"  # the labels key `use_class_label_maps` reads


def dino_labels(objects: Objects, meta: PreprocessMeta, chunk: PromptChunk) -> dict[str, torch.Tensor]:
    """Grounding DINO's `labels` entry for one image and prompt chunk: only the boxes of classes in that chunk,
    class_labels as the class's row of the chunk's class label maps (all its phrases positive), boxes as normalized
    cx, cy, w, h over the image's valid region."""
    in_chunk = torch.tensor([int(c) in chunk.class_ids for c in objects.class_ids], dtype=torch.bool)
    classes = objects.class_ids[in_chunk]
    return {"class_labels": torch.tensor([chunk.label_index(int(c)) for c in classes], dtype=torch.long),
            "boxes": meta.boxes_to_normalized_cxcywh(objects.boxes[in_chunk]).float().clamp(0, 1),
            CLASS_LABEL_MAPS: chunk.class_label_maps()}


def configure_dino_loss(model: nn.Module, auxiliary_loss: bool) -> dict[str, Any]:
    """Set up the Grounding DINO loss for fine-tuning; returns what was set, for metrics.json.

    auxiliary_loss: supervise every decoder layer, as IDEA's fine-tuning configs (Open-GroundingDino) do; the released
    checkpoints' config.json says false, which trains only the last layer.
    """
    detector = model.get_base_model() if hasattr(model, "get_base_model") else model
    detector.config.auxiliary_loss = auxiliary_loss
    use_class_label_maps(detector)
    return {"auxiliary_loss": auxiliary_loss, "decoder_layers": detector.config.decoder_layers,
            "label_maps": "per class: every phrase (synonym) of the class positive"}


def use_class_label_maps(detector: nn.Module) -> None:
    """Make the detector's loss read each image's class label maps from its labels (see
    `PromptChunk.class_label_maps`) instead of transformers' one-map-per-phrase `build_label_maps`; labels without
    them keep transformers' behaviour. Idempotent."""
    if getattr(detector, "_mlcore_class_label_maps", False):
        return
    reference = detector.loss_function

    def loss(logits, labels, device, pred_boxes, config, label_maps, text_mask, **kwargs):
        if labels and all(CLASS_LABEL_MAPS in target for target in labels):
            width = logits.shape[-1]
            label_maps = tuple(F.pad(target[CLASS_LABEL_MAPS].to(logits.device),
                                     (0, width - target[CLASS_LABEL_MAPS].shape[-1])) for target in labels)
            labels = [{key: value for key, value in target.items() if key != CLASS_LABEL_MAPS} for target in labels]
        return reference(logits, labels, device, pred_boxes, config, label_maps, text_mask, **kwargs)

    detector.loss_function = loss
    detector._mlcore_class_label_maps = True


def jitter_boxes(boxes: torch.Tensor, fraction: float, width: int, height: int) -> torch.Tensor:
    """Move each edge by up to `fraction` of the box's size (global torch RNG: restored on resume), inside the image."""
    if fraction <= 0 or boxes.numel() == 0:
        return boxes
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    moved = boxes + (torch.rand(boxes.shape) * 2 - 1) * fraction * size
    x1, y1, x2, y2 = moved.unbind(1)
    x1, x2 = torch.minimum(x1, x2).clamp(0, width), torch.maximum(x1, x2).clamp(0, width)
    y1, y2 = torch.minimum(y1, y2).clamp(0, height), torch.maximum(y1, y2).clamp(0, height)
    return torch.stack([x1, y1, x2, y2], dim=1)


def mask_targets(masks: np.ndarray, meta: PreprocessMeta, size: int) -> torch.Tensor:
    """(m, H, W) original-frame masks -> (m, size, size) soft targets over SAM's whole padded input, at the
    resolution of its low-res logits (area-averaged, so edges keep their partial coverage)."""
    model_frame = meta.masks_to_model(torch.from_numpy(masks)).float()
    return F.interpolate(model_frame[:, None], size=(size, size), mode="area")[:, 0]


def sam_mask_loss(logits: torch.Tensor, iou_predictions: torch.Tensor, targets: torch.Tensor,
                  weights: SamLossWeights) -> torch.Tensor:
    """BCE + Dice on the mask logits, plus MSE between SAM's predicted IoU and its mask's true IoU (all per mask,
    averaged over masks)."""
    logits, iou_predictions = logits.float(), iou_predictions.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean((1, 2))
    probabilities = logits.sigmoid()
    overlap = (probabilities * targets).sum((1, 2))
    dice = 1 - (2 * overlap + 1) / (probabilities.sum((1, 2)) + targets.sum((1, 2)) + 1)
    with torch.no_grad():
        predicted, truth = logits > 0, targets > 0.5
        union = (predicted | truth).sum((1, 2)).clamp(min=1)
        true_iou = (predicted & truth).sum((1, 2)) / union
    iou = (iou_predictions - true_iou) ** 2
    return (weights.bce * bce + weights.dice * dice + weights.iou * iou).mean()
