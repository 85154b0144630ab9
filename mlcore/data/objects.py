"""One image's trainable objects: what the teachers learn from and what distillation mixes with teacher labels.

Crowd regions are ignore-regions and never become objects; annotations of categories outside the class mapping
(unused categories `validate` left out) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mlcore.data.coco_dataset import Sample


@dataclass(frozen=True)
class Objects:
    """One image's trainable objects: xyxy boxes in the original frame, class indices, and which have masks."""

    boxes: torch.Tensor  # (n, 4) float32
    class_ids: torch.Tensor  # (n,) int64, contiguous class indices of the mode config
    has_mask: np.ndarray  # (n,) bool
    annotation_index: np.ndarray  # (n,) position in the sample's annotations (to pick its mask)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def masks(self, sample: Sample) -> np.ndarray:
        """(m, H, W) uint8 masks of the objects that have one, in the order of `self[self.has_mask]`."""
        return sample.masks()[self.annotation_index[self.has_mask]]


def sample_objects(sample: Sample, class_of_category: Mapping[int, int]) -> Objects:
    """Non-crowd annotations whose category is a class, with non-empty boxes."""
    widths, heights = sample.boxes[:, 2], sample.boxes[:, 3]
    known = np.array([int(c) in class_of_category for c in sample.category_ids], dtype=bool)
    keep = np.flatnonzero(~sample.iscrowd & known & (widths > 0) & (heights > 0))
    xywh = torch.from_numpy(sample.boxes[keep]).float().reshape(-1, 4)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    class_ids = torch.tensor([class_of_category[int(c)] for c in sample.category_ids[keep]], dtype=torch.long)
    return Objects(boxes=boxes, class_ids=class_ids, has_mask=sample.has_masks[keep] if len(keep) else
                   np.zeros(0, dtype=bool), annotation_index=keep)
