"""A student's COCO mAP on a labelled split: box mAP, and mask mAP for segmentation students.

Evaluated as ultralytics validates (conf 0.001, NMS IoU 0.7, up to 300 detections, several classes per box allowed),
in each image's original frame, by pycocotools. FastSAM has one class for all objects, so it is measured
class-agnostically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from tqdm import tqdm

from mlcore.data.coco_dataset import CocoDataset
from mlcore.errors import ConfigError
from mlcore.evaluation.coco_map import coco_map
from mlcore.evaluation.results import CategoryOf, box_results, mask_results
from mlcore.students.student import Student

__all__ = ["CategoryOf", "box_results", "evaluate_student", "mask_results"]


@torch.no_grad()
def evaluate_student(student: Student, dataset: CocoDataset, annotation_file: str | os.PathLike[str],
                     category_ids: Mapping[str, int], *, imgsz: int, batch_size: int = 8, conf: float = 0.001,
                     iou: float = 0.7, max_det: int = 300, progress: bool = False) -> dict[str, float]:
    """{"map50_95", "map50"} and, for segmentation students, {"mask_map50_95", "mask_map50"}.

    dataset: the split's samples (whose annotations are `annotation_file`); category_ids: class index ("0", ...)
    -> the COCO category id it stands for (the mode config's `category_ids`).
    """
    class_agnostic = student.kind == "fastsam"
    categories = sorted({int(category) for category in category_ids.values()})
    if not categories:
        raise ConfigError("no categories to evaluate", where="category_ids", fix="pass the mode config's category_ids")
    if not class_agnostic:
        missing = [index for index in range(student.num_classes) if str(index) not in category_ids]
        if missing:
            raise ConfigError(f"classes {missing} of the student have no COCO category id", where="category_ids",
                              fix="pass the mode config's category_ids for the classes the student was trained on")
    def category_of(class_id: int) -> int:
        return categories[0] if class_agnostic else int(category_ids[str(class_id)])

    preprocessor = student.preprocessor(imgsz)
    boxes: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="eval student", unit="batch", disable=not progress):
        samples = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
        batch = preprocessor([sample.image_path for sample in samples])
        predictions = student.predict_tensor(batch.pixel_values, batch.meta, conf=conf, iou=iou, max_det=max_det,
                                             multi_label=True)
        for sample, prediction in zip(samples, predictions):
            boxes += box_results(sample.image_id, prediction, category_of)
            if prediction.masks is not None:
                masks += mask_results(sample.image_id, prediction, category_of)
    metrics = coco_map(annotation_file, boxes, categories, "bbox", class_agnostic=class_agnostic)
    if student.task == "segment":
        mask_metrics = coco_map(annotation_file, masks, categories, "segm", class_agnostic=class_agnostic)
        metrics.update({f"mask_{key}": value for key, value in mask_metrics.items()})
    return metrics
