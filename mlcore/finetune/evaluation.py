"""Per-epoch validation of the teachers: Grounding DINO's COCO box mAP, SAM's mean mask IoU given the true boxes.

Both evaluate the way the teachers are used later (`GroundedSAM`): Grounding DINO's queries become original-frame
xyxy detections through the same `select_detections`, SAM turns original-frame boxes into original-frame masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.objects import sample_objects
from mlcore.evaluation.coco_map import load_annotations, run_coco_eval
from mlcore.finetune.dino_cache import DinoFeatureCache
from mlcore.finetune.sam_cache import LiveSamEmbeddings, SamEmbeddingCache
from mlcore.preprocess import SingleModelPreprocessor, load_rgb, stack_pixel_masks
from mlcore.teachers.grounding_dino import Detections, run_queries, select_detections
from mlcore.teachers.prompts import PromptChunk
from mlcore.teachers.sam import masks_in_original_frame
from mlcore.teachers.types import Teacher

# mAP is computed over the whole ranked list: keep low-scoring detections (COCO's usual 100 per image).
EVAL_SCORE_THRESHOLD = 0.0
EVAL_NMS_IOU = 0.7
MAX_DETECTIONS = 100


@torch.no_grad()
def dino_detections(teacher: Teacher, dataset: CocoDataset, indices: Sequence[int], chunks: Sequence[PromptChunk],
                    num_classes: int, *, preprocessor: SingleModelPreprocessor | None = None,
                    feature_cache: DinoFeatureCache | None = None, batch_size: int = 4,
                    progress: bool = False) -> list[tuple[int, Detections]]:
    """(index, detections) per image, every query kept (score 0 up, NMS 0.7, best 100): a ranked list for mAP.

    feature_cache: serve the frozen stages from it (filled here for what is missing), images on its canvas.
    """
    teacher.model.eval()
    preprocessor = preprocessor or teacher.preprocessor()
    indices = list(indices)
    found = []
    for start in tqdm(range(0, len(indices), batch_size), desc="eval grounding_dino", unit="batch",
                      disable=not progress):
        part = indices[start:start + batch_size]
        samples = [dataset[i] for i in part]
        if feature_cache is not None:
            paths = [sample.image_path for sample in samples]
            feature_cache.fill(paths, chunks)
            metas = feature_cache.metas([(sample.height, sample.width) for sample in samples])
            with feature_cache.replay(teacher.model, paths):
                queries = run_queries(teacher.model, feature_cache.blank(len(samples)),
                                      stack_pixel_masks(metas).to(teacher.device), chunks, num_classes)
        else:
            batch = preprocessor([load_rgb(sample.image_path) for sample in samples])
            metas = batch.meta
            pixel_values = batch.pixel_values.to(device=teacher.device, dtype=teacher.dtype)
            queries = run_queries(teacher.model, pixel_values, batch.pixel_mask.to(teacher.device), chunks,
                                  num_classes)
        for position, (index, meta) in enumerate(zip(part, metas)):
            detections = select_detections(queries.boxes[position].float().cpu(),
                                           queries.class_scores[position].float().cpu(), meta,
                                           box_threshold=EVAL_SCORE_THRESHOLD, text_threshold=EVAL_SCORE_THRESHOLD,
                                           nms_iou=EVAL_NMS_IOU)
            keep = slice(0, MAX_DETECTIONS)
            found.append((index, Detections(boxes=detections.boxes[keep], scores=detections.scores[keep],
                                            class_ids=detections.class_ids[keep],
                                            query_index=detections.query_index[keep])))
    return found


def coco_results(dataset: CocoDataset, detections: Sequence[tuple[int, Detections]],
                 category_of_class: Mapping[int, int]) -> list[dict]:
    """COCO result entries (xywh) from `dino_detections`, class indices mapped to category ids."""
    results = []
    for index, found in detections:
        image_id = dataset[index].image_id
        for (x1, y1, x2, y2), score, class_id in zip(found.boxes.tolist(), found.scores.tolist(),
                                                     found.class_ids.tolist()):
            results.append({"image_id": image_id, "category_id": int(category_of_class[int(class_id)]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


@torch.no_grad()
def evaluate_grounding_dino(teacher: Teacher, dataset: CocoDataset, annotation_file: str | Path,
                            chunks: Sequence[PromptChunk], category_ids: Mapping[str, int], *, batch_size: int = 4,
                            progress: bool = False, preprocessor: SingleModelPreprocessor | None = None,
                            feature_cache: DinoFeatureCache | None = None) -> BoxEvaluation:
    """COCO box mAP of the teacher on `dataset` (whose annotations are `annotation_file`): map50_95, map50, and
    AP50-95 per class index (None for a class without val boxes)."""
    detections = dino_detections(teacher, dataset, range(len(dataset)), chunks, len(category_ids),
                                 preprocessor=preprocessor, feature_cache=feature_cache, batch_size=batch_size,
                                 progress=progress)
    category_of_class = {int(index): int(cid) for index, cid in category_ids.items()}
    return coco_box_evaluation(annotation_file, coco_results(dataset, detections, category_of_class),
                               category_of_class)


@dataclass
class BoxEvaluation:
    """COCO box scores: `metrics` (map50_95, map50), per class index AP50-95 and AP50 (None: no ground truth)."""

    metrics: dict[str, float]
    per_class: dict[int, float | None]
    per_class_ap50: dict[int, float | None]


def coco_box_evaluation(ground_truth: str | Path | dict, results: list[dict],
                        category_of_class: Mapping[int, int]) -> BoxEvaluation:
    """pycocotools' bbox COCOeval over the classes' categories (`run_coco_eval`); 0.0 where a class has ground
    truth but nothing was measured, None where it has no ground truth.

    ground_truth: a COCO annotation file, or the same structure as a dict (built in memory).
    """
    truth = load_annotations(ground_truth)
    present = {int(a["category_id"]) for a in truth.get("annotations", [])}
    evaluation = run_coco_eval(truth, results, category_of_class.values(), "bbox")
    if evaluation is None:
        unmeasured = {k: (0.0 if int(c) in present else None) for k, c in category_of_class.items()}
        return BoxEvaluation({"map50_95": 0.0, "map50": 0.0}, unmeasured, dict(unmeasured))
    # precision: (IoU thresholds, recall points, categories, area ranges, max dets); area "all", 100 detections.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class, per_class_ap50 = {}, {}
    for class_id, category_id in category_of_class.items():
        k = evaluation.params.catIds.index(int(category_id))
        values, at50 = precision[:, :, k], precision[0, :, k]
        per_class[class_id] = float(values[values > -1].mean()) if (values > -1).any() else None
        per_class_ap50[class_id] = float(at50[at50 > -1].mean()) if (at50 > -1).any() else None
    return BoxEvaluation({"map50_95": max(float(evaluation.stats[0]), 0.0),
                          "map50": max(float(evaluation.stats[1]), 0.0)}, per_class, per_class_ap50)


def coco_box_map(annotation_file: str | Path, results: list[dict], category_ids: Sequence[int]) -> dict[str, float]:
    """map50_95 and map50 of `results` against `annotation_file` over `category_ids`."""
    return coco_box_evaluation(annotation_file, results, dict(enumerate(category_ids))).metrics


@torch.no_grad()
def evaluate_sam(teacher: Teacher, dataset: CocoDataset, indices: Sequence[int],
                 cache: SamEmbeddingCache | LiveSamEmbeddings, class_of_category: Mapping[int, int]) -> MaskEvaluation:
    """Mean IoU (original frame) of SAM's masks prompted by the true boxes, over every object with a mask; and
    per class index (classes without val masks are absent)."""
    teacher.model.eval()
    ious, classes = [], []
    for index in indices:
        sample = dataset[index]
        objects = sample_objects(sample, class_of_category)
        if not objects.has_mask.any():
            continue
        meta = cache.preprocessor.plan(sample.height, sample.width)
        predicted, _ = masks_in_original_frame(teacher.model, cache.get(sample.image_path),
                                               objects.boxes[torch.from_numpy(objects.has_mask)], meta)
        truth = torch.from_numpy(objects.masks(sample)).bool()
        union = (predicted | truth).sum((1, 2))
        overlap = (predicted & truth).sum((1, 2))
        ious += (overlap / union.clamp(min=1)).tolist()
        classes += objects.class_ids[torch.from_numpy(objects.has_mask)].tolist()
    per_class = {int(c): float(np.mean([iou for iou, k in zip(ious, classes) if k == c])) for c in sorted(set(classes))}
    return MaskEvaluation({"mean_iou": float(np.mean(ious)) if ious else 0.0, "val_masks": float(len(ious))},
                          per_class)


@dataclass
class MaskEvaluation:
    """SAM's scores: `metrics` (mean_iou, val_masks) and mean mask IoU per class index."""

    metrics: dict[str, float]
    per_class: dict[int, float]
