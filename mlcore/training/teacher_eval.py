"""Per-epoch validation of the teachers: Grounding DINO's COCO box mAP, SAM's mean mask IoU given the true boxes.

Both evaluate the way the teachers are used later (`GroundedSAM`): Grounding DINO's queries become original-frame
xyxy detections through the same `select_detections`, SAM turns original-frame boxes into original-frame masks.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlcore.data.coco_dataset import CocoDataset
from mlcore.preprocess import load_rgb
from mlcore.teachers.grounding_dino import run_queries, select_detections
from mlcore.teachers.prompts import PromptChunk
from mlcore.teachers.sam import masks_in_original_frame
from mlcore.teachers.types import Teacher
from mlcore.training.sam_cache import SamEmbeddingCache
from mlcore.training.teacher_losses import sample_objects

# mAP is computed over the whole ranked list: keep low-scoring detections (COCO's usual 100 per image).
EVAL_SCORE_THRESHOLD = 0.0
EVAL_NMS_IOU = 0.7
MAX_DETECTIONS = 100


@torch.no_grad()
def evaluate_grounding_dino(teacher: Teacher, dataset: CocoDataset, annotation_file: str | Path,
                            chunks: Sequence[PromptChunk], category_ids: Mapping[str, int], *, batch_size: int = 4,
                            progress: bool = False) -> dict[str, float]:
    """COCO box mAP of the teacher on `dataset` (whose annotations are `annotation_file`): map50_95, map50."""
    teacher.model.eval()
    preprocessor = teacher.preprocessor()
    results = []
    indices = range(len(dataset))
    for start in tqdm(range(0, len(dataset), batch_size), desc="eval grounding_dino", unit="batch",
                      disable=not progress):
        samples = [dataset[i] for i in indices[start:start + batch_size]]
        batch = preprocessor([load_rgb(sample.image_path) for sample in samples])
        pixel_values = batch.pixel_values.to(device=teacher.device, dtype=teacher.dtype)
        queries = run_queries(teacher.model, pixel_values, batch.pixel_mask.to(teacher.device), chunks,
                              len(category_ids))
        for index, (sample, meta) in enumerate(zip(samples, batch.meta)):
            found = select_detections(queries.boxes[index].float().cpu(), queries.class_scores[index].float().cpu(),
                                      meta, box_threshold=EVAL_SCORE_THRESHOLD, text_threshold=EVAL_SCORE_THRESHOLD,
                                      nms_iou=EVAL_NMS_IOU)
            for box, score, class_id in list(zip(found.boxes.tolist(), found.scores.tolist(),
                                                 found.class_ids.tolist()))[:MAX_DETECTIONS]:
                x1, y1, x2, y2 = box
                results.append({"image_id": sample.image_id, "category_id": int(category_ids[str(class_id)]),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return coco_box_map(annotation_file, results, sorted(category_ids.values()))


def coco_box_map(annotation_file: str | Path, results: list[dict], category_ids: Sequence[int]) -> dict[str, float]:
    """pycocotools' bbox COCOeval over the given categories; 0.0 where COCO has nothing to measure (-1)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        ground_truth = COCO(str(annotation_file))
        if not results or not ground_truth.getAnnIds(catIds=list(category_ids)):
            return {"map50_95": 0.0, "map50": 0.0}
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluation.params.catIds = list(category_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map50_95": max(float(evaluation.stats[0]), 0.0), "map50": max(float(evaluation.stats[1]), 0.0)}


@torch.no_grad()
def evaluate_sam(teacher: Teacher, dataset: CocoDataset, indices: Sequence[int], cache: SamEmbeddingCache,
                 class_of_category: Mapping[int, int]) -> dict[str, float]:
    """Mean IoU (original frame) of SAM's masks prompted by the true boxes, over every object with a mask."""
    teacher.model.eval()
    ious = []
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
    return {"mean_iou": float(np.mean(ious)) if ious else 0.0, "val_masks": float(len(ious))}
