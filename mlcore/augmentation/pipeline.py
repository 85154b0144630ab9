"""A callable pipeline that keeps each object's box, label and mask together through augmentation.

albumentations filters boxes but not masks or labels of other fields we did not give it; so the only label field
it carries is each object's index, and everything else is selected by the surviving indices. Where masks are
carried, the mask is the ground truth: a survivor's box becomes the tight box of its transformed mask, and an
object whose mask left the frame is dropped, so box and mask always agree. Which objects leave is judged on the given
boxes (a missing or degenerate one is replaced by its mask's tight box): scanning every input mask again would cost
more than the rest of this wrapper together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mlcore.augmentation.factory import INDEX_FIELD, build_compose
from mlcore.augmentation.translator import PipelineInfo
from mlcore.data.masks import tight_box


@dataclass
class AugmentedSample:
    image: np.ndarray  # (h, w, 3) uint8
    boxes: np.ndarray  # (n, 4) float32, COCO x, y, width, height in pixels
    labels: np.ndarray  # (n,) the input labels of the surviving objects, same dtype
    masks: np.ndarray | None  # (n, h, w) uint8, or None when the pipeline does not carry masks
    kept: np.ndarray  # (n,) int64 indices of the surviving objects in the input


class AugmentationPipeline:
    """`pipeline(image, boxes_xywh, labels, masks=None) -> AugmentedSample`; built by the registry."""

    def __init__(self, info: PipelineInfo, seed: int | None = None) -> None:
        self.info = info
        self.seed = seed
        self.compose = build_compose(info, seed=seed)

    @property
    def carries_masks(self) -> bool:
        return self.info.carries_masks

    def __call__(
        self, image: np.ndarray, boxes_xywh: np.ndarray | Sequence[Sequence[float]], labels: Sequence | np.ndarray,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> AugmentedSample:
        boxes = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        use_masks = self.carries_masks and masks is not None
        if not use_masks:
            out = self.compose(image=image, bboxes=boxes, **{INDEX_FIELD: np.arange(len(boxes))})
            kept = _indices(out[INDEX_FIELD])
            return AugmentedSample(out["image"], _boxes(out["bboxes"]), labels[kept], None, kept)

        given = masks if isinstance(masks, np.ndarray) and len(masks) else list(masks)  # albumentations: no (0, h, w)
        if len(given) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(given)} masks")
        boxes = boxes.copy()
        for index in np.flatnonzero((boxes[:, 2] < 1) | (boxes[:, 3] < 1)):  # no usable box given: the mask's
            box = mask_box(given[index])
            if box is not None:
                boxes[index] = box
        out = self.compose(image=image, bboxes=boxes, masks=given, **{INDEX_FIELD: np.arange(len(boxes))})
        kept, new_boxes, out_masks = _indices(out[INDEX_FIELD]), _boxes(out["bboxes"]), out["masks"]
        keep_rows = []
        for row, index in enumerate(kept):
            box = mask_box(out_masks[index], near=new_boxes[row])
            if box is not None:
                new_boxes[row] = box
            elif mask_box(given[index]) is not None:  # albumentations kept a sliver of box; the object left
                continue
            keep_rows.append(row)  # (an object that never had a mask keeps albumentations' box)
        kept, new_boxes = kept[keep_rows], new_boxes[keep_rows]
        return AugmentedSample(out["image"], new_boxes, labels[kept], _select(out_masks, kept, out["image"]), kept)


def mask_box(mask: np.ndarray, near: np.ndarray | None = None) -> tuple[float, float, float, float] | None:
    """`tight_box` of a mask, faster: OpenCV's bounding rectangle of non-zero pixels, searched first in the region
    `near` (albumentations' box, which normally contains the mask) and accepted there only if no pixel is outside."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        return tight_box(mask)
    if near is not None:
        height, width = mask.shape
        x0, y0 = max(0, int(near[0]) - 2), max(0, int(near[1]) - 2)
        x1, y1 = min(width, int(near[0] + near[2]) + 3), min(height, int(near[1] + near[3]) + 3)
        if x1 > x0 and y1 > y0:
            region = mask[y0:y1, x0:x1]
            inside = cv2.countNonZero(region)
            if inside and inside == cv2.countNonZero(mask):
                x, y, w, h = cv2.boundingRect(region)
                return float(x0 + x), float(y0 + y), float(w), float(h)
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask))
    return (float(x), float(y), float(w), float(h)) if w and h else None


def _select(masks: np.ndarray | Sequence[np.ndarray], kept: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(n, h, w) uint8 masks of the survivors, in their order; no copy when every object survived in order."""
    if isinstance(masks, np.ndarray) and masks.dtype == np.uint8 and np.array_equal(kept, np.arange(len(masks))):
        return masks
    if len(kept) == 0:
        return np.zeros((0, *image.shape[:2]), dtype=np.uint8)
    if isinstance(masks, np.ndarray):
        return masks[kept].astype(np.uint8, copy=False)
    return np.stack([masks[index] for index in kept]).astype(np.uint8, copy=False)


def _indices(values: Sequence) -> np.ndarray:
    # Label fields come back as floats in albumentations 2.x.
    return np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64).reshape(-1)


def _boxes(values: Sequence) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 4)
