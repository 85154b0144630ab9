"""One image's training targets: ground truth and teacher labels combined by the configured rule.

    gt = ground_truth_targets(sample, class_of_category, num_classes, with_masks=True)     # None for unlabeled images
    teacher = cache.get(sample.image_path)                                                 # TeacherTargetCache
    targets = combine_targets(gt, teacher, rule="prefer_ground_truth", union_iou_threshold=0.5,
                              score_threshold=0.3, num_classes=num_classes, with_masks=True)

Rules (`ground_truth.rule` of the kd configs):
- prefer_ground_truth: an annotated image keeps its annotations; an unannotated one gets the teacher's detections
  scoring at least score_threshold;
- teacher_only: the teacher's detections (>= score_threshold) everywhere, annotations ignored;
- union: annotations plus the teacher's detections (>= score_threshold) whose IoU with every annotation is below
  union_iou_threshold (class-agnostic: a box on an annotated object is a duplicate, whatever class it got).

Annotated objects borrow soft scores (for logit distillation) and, when they have no mask of their own, a mask from
the best-matching teacher detection: IoU >= 0.5 and the same class (a class-less SAM box matches any class).
An object that still has no mask gets its filled box as mask: a coarse target, but it keeps the object's box and
class supervision and never teaches "empty" inside a real object. Teacher detections without a class (-1: SAM
prompted by boxes without classes) are not used as pseudo-labels.

`None` ground truth means "not annotated" (an --unlabeled image); an ImageTargets with no objects is an annotated
negative image and stays empty under prefer_ground_truth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision.ops import box_iou

from mlcore.data.coco_dataset import Sample
from mlcore.data.objects import sample_objects
from mlcore.distill.label_cache import LabelRequest, TeacherOutput, TeacherTargetCache
from mlcore.distill.records import SOURCE_GROUND_TRUTH, SOURCE_TEACHER, ImageTargets
from mlcore.errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "MATCH_IOU", "LabelRequest", "TeacherOutput", "TeacherTargetCache", "combine_targets",
           "find_unlabeled_images", "ground_truth_targets"]

Rule = Literal["prefer_ground_truth", "teacher_only", "union"]
MATCH_IOU = 0.5  # a teacher detection at least this close to an annotation describes the same object
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def ground_truth_targets(sample: Sample, class_of_category: Mapping[int, int], num_classes: int, *,
                         with_masks: bool) -> ImageTargets:
    """A sample's trainable annotations (crowd, unknown-category and empty boxes dropped) as ImageTargets.

    with_masks: (n, H, W) uint8 masks; an annotation without a mask gets an all-zero one, which `combine_targets`
    reads as "no mask" and fills in. soft_scores are NaN (no teacher has scored them yet)."""
    objects = sample_objects(sample, class_of_category)
    count = len(objects)
    masks = None
    if with_masks:
        masks = (sample.masks()[objects.annotation_index] if count
                 else np.zeros((0, sample.height, sample.width), dtype=np.uint8))
    return ImageTargets(boxes=objects.boxes.numpy().astype(np.float32).reshape(-1, 4),
                        class_ids=objects.class_ids.numpy().astype(np.int64),
                        soft_scores=np.full((count, num_classes), np.nan, dtype=np.float32),
                        source=np.full(count, SOURCE_GROUND_TRUTH, dtype=np.uint8), masks=masks)


def combine_targets(ground_truth: ImageTargets | None, teacher: TeacherOutput | None, *, rule: Rule,
                    union_iou_threshold: float, score_threshold: float, num_classes: int,
                    with_masks: bool) -> ImageTargets:
    """Ground truth and teacher labels of one image -> its targets by `rule` (see the module docstring)."""
    if rule not in ("prefer_ground_truth", "teacher_only", "union"):
        raise ValueError(f"unknown ground-truth rule {rule!r}")
    if ground_truth is None and teacher is None:
        raise ValueError("an image needs ground truth, teacher labels or both")
    if rule == "teacher_only" and teacher is None:
        raise ValueError("rule teacher_only needs the teacher's labels for every image")
    image_size = _image_size(ground_truth, teacher, with_masks)
    parts: list[ImageTargets] = []
    if ground_truth is not None and rule != "teacher_only":
        parts.append(_annotations_with_teacher(ground_truth, teacher, num_classes, with_masks, image_size))
    if teacher is not None and (rule != "prefer_ground_truth" or ground_truth is None):
        keep = _usable(teacher, score_threshold, num_classes)
        if rule == "union" and ground_truth is not None and len(ground_truth) and keep.any():
            overlap = _iou(teacher.boxes[keep], ground_truth.boxes).max(axis=1)
            keep[np.flatnonzero(keep)[overlap >= union_iou_threshold]] = False
        parts.append(_teacher_objects(teacher, keep, num_classes, with_masks, image_size))
    targets = _concat(parts, num_classes, with_masks, image_size)
    if teacher is not None:
        targets.features, targets.feature_meta = teacher.features, teacher.feature_meta
    return targets


def find_unlabeled_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under `folder`, subfolders included (hidden files and folders skipped), sorted by path.

    Suffixes: IMAGE_SUFFIXES, any letter case. A missing folder or one without images is a DatasetError."""
    root = Path(folder)
    fix = "pass --unlabeled a folder that holds the extra images (.jpg, .png, ...), or leave it out"
    if not root.is_dir():
        raise DatasetError("the unlabeled-images folder does not exist" if not root.exists() else
                           "the unlabeled-images path is not a folder", where=str(root), fix=fix)
    images = sorted(path for path in root.rglob("*")
                    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                    and not any(part.startswith(".") for part in path.relative_to(root).parts))
    if not images:
        raise DatasetError(f"no images in the unlabeled-images folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                           " in it and its subfolders)", where=str(root), fix=fix)
    return images


# -- pieces -----------------------------------------------------------------------------------------------------

def _annotations_with_teacher(ground_truth: ImageTargets, teacher: TeacherOutput | None, num_classes: int,
                              with_masks: bool, image_size: tuple[int, int]) -> ImageTargets:
    """Annotations, with soft scores and missing masks taken from their best-matching teacher detection."""
    count = len(ground_truth)
    soft = np.full((count, num_classes), np.nan, dtype=np.float32)
    if ground_truth.soft_scores.shape == soft.shape:
        soft[:] = ground_truth.soft_scores
    match = _match(ground_truth, teacher) if teacher is not None else np.full(count, -1)
    matched = match >= 0
    if teacher is not None and matched.any():
        soft[matched] = teacher.class_scores[match[matched]]
    masks = None
    if with_masks:
        masks = (ground_truth.masks.astype(np.uint8, copy=True) if ground_truth.masks is not None
                 else np.zeros((count, *image_size), dtype=np.uint8))
        for index in np.flatnonzero(~masks.any(axis=(1, 2))):
            if matched[index] and teacher is not None and teacher.masks is not None:
                masks[index] = teacher.masks[match[index]]
            if not masks[index].any():
                masks[index] = _box_mask(ground_truth.boxes[index], image_size)
    return ImageTargets(boxes=ground_truth.boxes.astype(np.float32), class_ids=ground_truth.class_ids.astype(np.int64),
                        soft_scores=soft, source=np.full(count, SOURCE_GROUND_TRUTH, dtype=np.uint8), masks=masks)


def _match(ground_truth: ImageTargets, teacher: TeacherOutput) -> np.ndarray:
    """Per annotation, the teacher detection of the same class (or class-less) with the highest IoU >= MATCH_IOU;
    -1 when none. All teacher detections count, whatever their score: their soft scores are what is borrowed."""
    match = np.full(len(ground_truth), -1, dtype=np.int64)
    if not len(ground_truth) or not len(teacher):
        return match
    iou = _iou(ground_truth.boxes, teacher.boxes)
    same_class = ((ground_truth.class_ids[:, None] == teacher.class_ids[None, :]) | (teacher.class_ids[None, :] < 0))
    iou = np.where(same_class & (iou >= MATCH_IOU), iou, -1.0)
    best = iou.argmax(axis=1)
    found = iou[np.arange(len(best)), best] >= 0
    match[found] = best[found]
    return match


def _usable(teacher: TeacherOutput, score_threshold: float, num_classes: int) -> np.ndarray:
    """Teacher detections fit to be pseudo-labels: confident enough and with a class."""
    return (teacher.scores >= score_threshold) & (teacher.class_ids >= 0) & (teacher.class_ids < num_classes)


def _teacher_objects(teacher: TeacherOutput, keep: np.ndarray, num_classes: int, with_masks: bool,
                     image_size: tuple[int, int]) -> ImageTargets:
    boxes = teacher.boxes[keep].astype(np.float32).reshape(-1, 4)
    masks = None
    if with_masks:
        masks = (teacher.masks[keep].astype(np.uint8) if teacher.masks is not None
                 else np.zeros((len(boxes), *image_size), dtype=np.uint8))
        for index in np.flatnonzero(~masks.any(axis=(1, 2))):
            masks[index] = _box_mask(boxes[index], image_size)
    return ImageTargets(boxes=boxes, class_ids=teacher.class_ids[keep].astype(np.int64),
                        soft_scores=teacher.class_scores[keep].astype(np.float32).reshape(-1, num_classes),
                        source=np.full(len(boxes), SOURCE_TEACHER, dtype=np.uint8), masks=masks)


def _concat(parts: list[ImageTargets], num_classes: int, with_masks: bool,
            image_size: tuple[int, int]) -> ImageTargets:
    if not parts:
        parts = [ImageTargets(boxes=np.zeros((0, 4), dtype=np.float32), class_ids=np.zeros(0, dtype=np.int64),
                              soft_scores=np.zeros((0, num_classes), dtype=np.float32),
                              source=np.zeros(0, dtype=np.uint8),
                              masks=np.zeros((0, *image_size), dtype=np.uint8) if with_masks else None)]
    return ImageTargets(boxes=np.concatenate([p.boxes for p in parts]),
                        class_ids=np.concatenate([p.class_ids for p in parts]),
                        soft_scores=np.concatenate([p.soft_scores for p in parts]),
                        source=np.concatenate([p.source for p in parts]),
                        masks=np.concatenate([p.masks for p in parts]) if with_masks else None)


def _image_size(ground_truth: ImageTargets | None, teacher: TeacherOutput | None,
                with_masks: bool) -> tuple[int, int]:
    """(height, width) of the image, which only masks need."""
    if teacher is not None:
        return teacher.image_size
    if ground_truth is not None and ground_truth.masks is not None:
        return int(ground_truth.masks.shape[1]), int(ground_truth.masks.shape[2])
    if with_masks:
        raise ValueError("with_masks needs the image size: give ground truth with masks or the teacher's labels")
    return (0, 0)


def _box_mask(box: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The filled box (pixels whose centre lies inside it), at least one pixel so it never reads as "no mask"."""
    height, width = image_size
    mask = np.zeros((height, width), dtype=np.uint8)
    x1, y1 = int(np.clip(np.round(box[0]), 0, width - 1)), int(np.clip(np.round(box[1]), 0, height - 1))
    x2, y2 = int(np.clip(np.round(box[2]), x1 + 1, width)), int(np.clip(np.round(box[3]), y1 + 1, height))
    mask[y1:y2, x1:x2] = 1
    return mask


def _iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return box_iou(torch.from_numpy(np.asarray(first, dtype=np.float32)).reshape(-1, 4),
                   torch.from_numpy(np.asarray(second, dtype=np.float32)).reshape(-1, 4)).numpy()
