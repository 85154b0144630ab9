"""The records distillation passes along: images in, targets, batches, and the run's result out.

    TrainItem            one training image, annotated or not
    ImageTargets         original image frame, numpy: what ground truth and the teachers say about one image
    StudentBatch         student input frame (letterboxed, imgsz x imgsz), torch: what the loss consumes
    DistillationResult   what a run wrote: best and last checkpoints, the epochs, teacher calls

The trainer turns ImageTargets into a StudentBatch (augmentation, letterbox); the loss never sees an original frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcore.data.coco_dataset import Sample

SOURCE_GROUND_TRUTH = 0
SOURCE_TEACHER = 1


@dataclass
class ImageTargets:
    """One image's objects in its ORIGINAL pixel frame.

    boxes (n, 4) float32 xyxy; class_ids (n,) int64 contiguous class indices (mode config order); masks (n, H, W)
    uint8 or None when the mode has no masks; soft_scores (n, C) float32 teacher per-class probabilities, NaN rows
    for objects the teacher did not score (ground truth); source (n,) uint8 SOURCE_*; features (Ct, h, w) float16
    teacher feature map spanning the teacher's whole input canvas, with feature_meta the teacher frame's
    `PreprocessMeta.to_dict()`, both None unless feature distillation is on.
    """

    boxes: np.ndarray
    class_ids: np.ndarray
    soft_scores: np.ndarray
    source: np.ndarray
    masks: np.ndarray | None = None
    features: np.ndarray | None = None
    feature_meta: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class StudentBatch:
    """A training batch in the student's input frame (imgsz x imgsz).

    images (B, 3, S, S) float 0-1; batch_idx (n,) int64 image of each object; class_ids (n,) int64; boxes (n, 4)
    float xyxy input pixels; masks (n, S, S) float 0/1 or None; soft_scores (n, C) float, NaN rows where no teacher
    scores exist; teacher_features (B, Ct, h, w) float aligned to the student input frame (any h, w) with
    feature_valid (B, 1, h, w) bool (False where the teacher saw nothing, e.g. letterbox padding), or both None.
    """

    images: torch.Tensor
    batch_idx: torch.Tensor
    class_ids: torch.Tensor
    boxes: torch.Tensor
    soft_scores: torch.Tensor
    masks: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None
    feature_valid: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> StudentBatch:
        def move(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.to(device)

        return StudentBatch(images=self.images.to(device), batch_idx=self.batch_idx.to(device),
                            class_ids=self.class_ids.to(device), boxes=self.boxes.to(device),
                            soft_scores=self.soft_scores.to(device), masks=move(self.masks),
                            teacher_features=move(self.teacher_features), feature_valid=move(self.feature_valid))


@dataclass
class TrainItem:
    """One training image: annotated (`sample`) or not (labelled by the teachers only)."""

    image_path: Path
    sample: Sample | None = None


@dataclass
class DistillationResult:
    output_dir: Path
    mode: str
    student: str
    best_metric: str
    best: float | None
    best_epoch: int | None
    epochs: list[dict[str, float]]
    teacher_calls: int
    pseudo_labelled_images: int
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_path(self) -> Path:
        return self.output_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.output_dir / "last.pt"
