"""From one image's targets (original frame) to a student training batch (letterboxed frame).

    builder = StudentBatchBuilder(640, num_classes=3, augmentation=pipeline, seed=42)
    example = builder.example(rgb, targets, epoch=2, index=17)     # augment, letterbox, align teacher features
    batch = builder.collate([example, ...])                         # StudentBatch for DistillationLoss

The augmentation of an image depends only on (seed, epoch, image index), never on what ran before it: a resumed run
sees exactly the augmentations an uninterrupted one would. Teacher targets travel through the augmentation with
the ground truth (same transform, same survivors). Teacher feature maps cannot follow a geometric transform, so
when they are used the caller builds the pipeline without spatial transforms (`without_spatial_transforms`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mlcore.augmentation.pipeline import AugmentationPipeline
from mlcore.distill.geometry import align_teacher_student_outputs
from mlcore.distill.records import ImageTargets, StudentBatch
from mlcore.preprocess import for_model
from mlcore.preprocess.meta import PreprocessMeta
from mlcore.training.data_order import epoch_seed

FEATURE_STRIDE = 8  # teacher features are aligned to the student's stride-8 grid; the loss resamples per layer
AUGMENTATION_STREAM = 7  # epoch_seed stream for augmentation, apart from the data order's


@dataclass
class StudentExample:
    """One augmented, letterboxed image with its objects (student input frame)."""

    pixels: torch.Tensor  # (3, S, S) float 0-1
    boxes: torch.Tensor  # (n, 4) xyxy input pixels
    class_ids: torch.Tensor  # (n,)
    soft_scores: torch.Tensor  # (n, C)
    masks: torch.Tensor | None  # (n, S, S) uint8
    features: torch.Tensor | None  # (Ct, S/8, S/8)
    feature_valid: torch.Tensor | None  # (1, S/8, S/8) bool


def without_spatial_transforms(pipeline: AugmentationPipeline) -> AugmentationPipeline | None:
    """The same pipeline minus every geometric transform (photometric ones keep features aligned); None if empty."""
    info = replace(pipeline.info, transforms=[t for t in pipeline.info.transforms if not t.spatial])
    return AugmentationPipeline(info, seed=pipeline.seed) if info.transforms else None


class StudentBatchBuilder:
    def __init__(self, imgsz: int, *, num_classes: int, augmentation: AugmentationPipeline | None = None,
                 seed: int = 0) -> None:
        self.imgsz = imgsz
        self.num_classes = num_classes
        self.augmentation = augmentation
        self.seed = seed
        self.preprocessor = for_model("yolo", {"yolo": {"longest_edge": imgsz, "pad_to": [imgsz, imgsz]}})

    def example(self, rgb: np.ndarray, targets: ImageTargets, *, epoch: int, index: int) -> StudentExample:
        boxes, class_ids, soft, masks = targets.boxes, targets.class_ids, targets.soft_scores, targets.masks
        if self.augmentation is not None:
            self.augmentation.compose.set_random_seed(epoch_seed(self.seed + index, epoch, AUGMENTATION_STREAM))
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) if len(boxes) else boxes
            out = self.augmentation(rgb, xywh, np.arange(len(boxes)), masks)
            rgb, kept = out.image, out.kept
            boxes = np.concatenate([out.boxes[:, :2], out.boxes[:, :2] + out.boxes[:, 2:]], axis=1)
            class_ids, soft = class_ids[kept], soft[kept]
            masks = out.masks if masks is not None else None
        processed = self.preprocessor(rgb)
        meta: PreprocessMeta = processed.meta
        model_boxes = meta.boxes_to_model(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        features = valid = None
        if targets.features is not None and targets.feature_meta is not None:
            size = self.imgsz // FEATURE_STRIDE
            features, valid = align_teacher_student_outputs(
                torch.as_tensor(targets.features).float(), PreprocessMeta.from_dict(targets.feature_meta), meta,
                (size, size))
        return StudentExample(
            pixels=processed.pixel_values, boxes=model_boxes, class_ids=torch.as_tensor(class_ids).long(),
            soft_scores=torch.as_tensor(soft, dtype=torch.float32).reshape(-1, self.num_classes),
            masks=None if masks is None else torch.as_tensor(meta.masks_to_model(np.asarray(masks, np.uint8))),
            features=features, feature_valid=valid)

    def collate(self, examples: list[StudentExample]) -> StudentBatch:
        with_masks = any(example.masks is not None for example in examples)
        with_features = all(example.features is not None for example in examples)
        return StudentBatch(
            images=torch.stack([example.pixels for example in examples]),
            batch_idx=torch.cat([torch.full((len(example.boxes),), index, dtype=torch.long)
                                 for index, example in enumerate(examples)]),
            class_ids=torch.cat([example.class_ids for example in examples]),
            boxes=torch.cat([example.boxes for example in examples]),
            soft_scores=torch.cat([example.soft_scores for example in examples]),
            masks=torch.cat([example.masks if example.masks is not None else  # no masks: all empty (unsupervised)
                             torch.zeros((len(example.boxes), self.imgsz, self.imgsz), dtype=torch.uint8)
                             for example in examples]).float() if with_masks else None,
            teacher_features=torch.stack([example.features for example in examples]) if with_features else None,
            feature_valid=torch.stack([example.feature_valid for example in examples]) if with_features else None)
