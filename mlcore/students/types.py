"""What a student says about one image: boxes, scores, classes and (segmentation students) masks, original frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StudentPrediction:
    """One image's detections in its ORIGINAL pixel frame, best score first.

    boxes (n, 4) float32 xyxy pixels; scores (n,) float32; class_ids (n,) int64 contiguous class indices (the
    checkpoint's `names` order); masks (n, H, W) bool for segmentation students, None for detectors; image_size (H, W).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    masks: torch.Tensor | None
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
