"""How good a model is: COCO box and mask mAP (pycocotools), and a student's mAP on a labelled split.

- `coco_map(annotation_file, results, category_ids, iou_type="bbox" | "segm", class_agnostic=False)`
- `evaluate_student(student, dataset, annotation_file, category_ids, imgsz=...)`
"""

from __future__ import annotations

from mlcore.evaluation.coco_map import coco_map, mask_to_rle
from mlcore.evaluation.student_eval import evaluate_student

__all__ = ["coco_map", "evaluate_student", "mask_to_rle"]
