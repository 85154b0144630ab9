"""The teacher's COCO mAP as it labels images (Grounded SAM with its class prompts), for comparing with students.

Grounding DINO ranks every query above `score_threshold` (default 0: mAP is measured over the whole ranked list,
as for the students at conf 0.001); the best `max_det` per image are kept and only those are given to SAM, so a
low threshold never makes SAM decode hundreds of full-resolution masks. Without Grounding DINO (segmentation_only)
SAM is prompted with the ground-truth boxes: the mask mAP then measures SAM alone and the box mAP is trivially 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from mlcore.data.coco_dataset import CocoDataset, Sample
from mlcore.errors import ConfigError
from mlcore.evaluation.coco_map import AnnotationSource, IouType, load_annotations
from mlcore.evaluation.evaluate import EvaluationResult, Predictions, score_predictions
from mlcore.evaluation.metrics import ground_truth_has_masks
from mlcore.evaluation.results import category_mapping, prediction_results
from mlcore.evaluation.shards import Shard
from mlcore.preprocess import load_rgb

if TYPE_CHECKING:  # the teachers pull in transformers: imported only when a teacher is evaluated
    from mlcore.teachers.grounded_sam import GroundedSAM

TEACHER_SCORE_THRESHOLD = 0.0
TEACHER_MAX_DETECTIONS = 100  # COCO's own limit per image


@dataclass
class _Found:
    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    masks: torch.Tensor | None = None


def evaluate_teacher(grounded_sam: GroundedSAM, dataset: CocoDataset, annotation_file: AnnotationSource,
                     category_ids: Mapping[str, int] | None = None, *, batch_size: int = 4,
                     score_threshold: float = TEACHER_SCORE_THRESHOLD, max_det: int = TEACHER_MAX_DETECTIONS,
                     progress: bool = False, name: str = "teacher") -> EvaluationResult:
    """Box mAP (Grounding DINO) and mask mAP (SAM, where the ground truth has masks) of the teachers on `dataset`.

    category_ids: the teacher's class index ("0", ...) -> COCO category id (the mode config's); None: its class
    names matched to the file's categories. The teacher object is not changed: thresholds apply to views of it.
    """
    annotations = load_annotations(annotation_file)
    predicted = predict_teacher(grounded_sam, dataset, annotations, category_ids, batch_size=batch_size,
                                score_threshold=score_threshold, max_det=max_det, progress=progress, name=name)
    return score_predictions(predicted, annotations)


@torch.no_grad()
def predict_teacher(grounded_sam: GroundedSAM, dataset: CocoDataset, annotation_file: AnnotationSource,
                    category_ids: Mapping[str, int] | None = None, *, batch_size: int = 4,
                    score_threshold: float = TEACHER_SCORE_THRESHOLD, max_det: int = TEACHER_MAX_DETECTIONS,
                    progress: bool = False, name: str = "teacher", shard: Shard = Shard()) -> Predictions:
    """`evaluate_teacher`'s predictions, unscored: of every image, or of `shard`'s (whole batches of the full run)."""
    started = time.perf_counter()
    annotations = load_annotations(annotation_file)
    mapping = category_mapping(grounded_sam.class_names, annotations, category_ids)
    class_of = {category: index for index, category in mapping.items()}
    categories = sorted(set(mapping.values()))
    dino = _dino_view(grounded_sam, score_threshold)
    sam = _sam_view(grounded_sam) if ground_truth_has_masks(annotations, categories) else None
    if dino is None and sam is None:
        raise ConfigError("only SAM is loaded and the annotations have no masks: nothing to measure",
                          where=str(annotation_file) if not isinstance(annotation_file, Mapping) else "annotations",
                          fix="evaluate SAM on a split with masks, or load Grounding DINO to measure boxes")
    records: list[dict[str, Any]] = []
    image_ids: list[int] = []
    for indices in tqdm(shard.batches(len(dataset), batch_size), desc=f"eval {name}", unit="batch",
                        disable=not progress):
        samples = [dataset[index] for index in indices]
        rgbs = [load_rgb(sample.image_path) for sample in samples]
        if dino is not None:
            found = [_Found(p.boxes[:max_det], p.scores[:max_det], p.class_ids[:max_det]) for p in dino.predict(rgbs)]
        else:
            found = [_ground_truth(sample, class_of) for sample in samples]
        if sam is not None:
            _segment(sam, rgbs, found, scores_from_sam=dino is None)
        for sample, prediction in zip(samples, found):
            records += prediction_results(sample.image_id, prediction, mapping.__getitem__)
            image_ids.append(int(sample.image_id))
    iou_types: list[IouType] = ["bbox", "segm"] if sam is not None else ["bbox"]
    settings = {"prompted_with": "grounding_dino" if dino is not None else "ground-truth boxes",
                "score_threshold": score_threshold, "max_det": max_det, "nms_iou": grounded_sam.nms_iou,
                "batch_size": batch_size, "teachers": sorted(grounded_sam.teachers),
                "category_ids": {str(index): category for index, category in sorted(mapping.items())}}
    return Predictions(name, records, image_ids, categories, iou_types, False, settings,
                       time.perf_counter() - started)


def _dino_view(grounded_sam: GroundedSAM, score_threshold: float) -> GroundedSAM | None:
    """Grounding DINO alone, at the evaluation's threshold (the same model, prompts and preprocessing)."""
    from mlcore.teachers.grounded_sam import GroundedSAM

    if grounded_sam.grounding_dino is None:
        return None
    return GroundedSAM(grounded_sam.class_names, grounding_dino=grounded_sam.grounding_dino,
                       class_prompts=grounded_sam.class_prompts, box_threshold=score_threshold,
                       text_threshold=score_threshold, nms_iou=grounded_sam.nms_iou,
                       preprocessors={"grounding_dino": grounded_sam.preprocessors["grounding_dino"]},
                       precision=grounded_sam.precision)


def _sam_view(grounded_sam: GroundedSAM) -> GroundedSAM | None:
    from mlcore.teachers.grounded_sam import GroundedSAM

    if grounded_sam.sam is None:
        return None
    return GroundedSAM(grounded_sam.class_names, sam=grounded_sam.sam,
                       preprocessors={"sam": grounded_sam.preprocessors["sam"]}, precision=grounded_sam.precision)


def _segment(sam: GroundedSAM, rgbs: Sequence[np.ndarray], found: list[_Found], *, scores_from_sam: bool) -> None:
    """SAM's original-frame masks for each image's boxes (images without boxes get an empty stack)."""
    with_boxes = [index for index, item in enumerate(found) if len(item.boxes)]
    for rgb, item in zip(rgbs, found):
        item.masks = torch.zeros((0, *rgb.shape[:2]), dtype=torch.bool)
    if not with_boxes:
        return
    predictions = sam.predict([rgbs[index] for index in with_boxes], boxes=[found[index].boxes for index in with_boxes],
                              class_ids=[found[index].class_ids for index in with_boxes])
    for index, prediction in zip(with_boxes, predictions):
        found[index].masks = prediction.masks
        if scores_from_sam and prediction.mask_scores is not None:
            found[index].scores = prediction.mask_scores  # SAM's own IoU estimate ranks its masks


def _ground_truth(sample: Sample, class_of: Mapping[int, int]) -> _Found:
    """The sample's (non-crowd) objects of the measured categories as boxes with score 1: SAM's prompts."""
    keep = [i for i, (category, crowd) in enumerate(zip(sample.category_ids.tolist(), sample.iscrowd.tolist()))
            if category in class_of and not crowd]
    xywh = torch.from_numpy(sample.boxes[keep]).reshape(-1, 4)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    classes = torch.tensor([class_of[int(sample.category_ids[i])] for i in keep], dtype=torch.int64)
    return _Found(boxes, torch.ones(len(keep)), classes)
