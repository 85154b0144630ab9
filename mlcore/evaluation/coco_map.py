"""COCO mAP with pycocotools, boxes or masks, from result dicts: the numbers every model in mlcore is compared by.

Results are COCO's detection-result records: {"image_id", "category_id", "score", "bbox": [x, y, w, h]} for boxes,
{..., "segmentation": RLE} for masks (`mask_to_rle`). Only the categories asked for are measured; for masks, only
ground-truth objects that have a mask count.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

IouType = Literal["bbox", "segm"]
_RESULT_KEYS = {"bbox": ("image_id", "category_id", "score", "bbox"),
                "segm": ("image_id", "category_id", "score", "segmentation")}


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) binary mask -> COCO compressed RLE with text counts (JSON-safe)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_map(annotation_file: str | os.PathLike[str] | Mapping[str, Any], results: Sequence[Mapping[str, Any]],
             category_ids: Sequence[int], iou_type: IouType = "bbox",
             class_agnostic: bool = False) -> dict[str, float]:
    """{"map50_95", "map50"} of `results` against the annotation file (a path or the loaded COCO dict).

    category_ids: the COCO categories measured (others are ignored on both sides). class_agnostic: a prediction
    matches any object whatever its category (pycocotools' useCats=0), as for FastSAM. 0.0 where there is nothing
    to measure (no results, or no ground truth of those categories).
    """
    if iou_type not in _RESULT_KEYS:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    wanted = {int(category) for category in category_ids}
    keys = _RESULT_KEYS[iou_type]
    detections = [{key: result[key] for key in keys} for result in results
                  if int(result["category_id"]) in wanted]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        ground_truth = COCO()
        ground_truth.dataset = _measured_ground_truth(annotation_file, wanted, iou_type)
        ground_truth.createIndex()
        if not detections or not ground_truth.dataset["annotations"]:
            return {"map50_95": 0.0, "map50": 0.0}
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType=iou_type)
        evaluation.params.catIds = sorted(wanted)
        evaluation.params.useCats = 0 if class_agnostic else 1
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map50_95": max(float(evaluation.stats[0]), 0.0), "map50": max(float(evaluation.stats[1]), 0.0)}


def _measured_ground_truth(annotation_file: str | os.PathLike[str] | Mapping[str, Any], categories: set[int],
                           iou_type: IouType) -> dict[str, Any]:
    """The annotation file's images with only the objects measured: those categories, and a mask for segm."""
    if isinstance(annotation_file, Mapping):
        data = dict(annotation_file)
    else:
        with open(annotation_file, encoding="utf-8") as handle:
            data = json.load(handle)
    annotations = [_with_area(annotation) for annotation in data.get("annotations", [])
                   if int(annotation["category_id"]) in categories
                   and (iou_type == "bbox" or _has_mask(annotation))]
    return {"info": data.get("info", {}), "images": list(data.get("images", [])),
            "categories": list(data.get("categories", [])), "annotations": annotations}


def _with_area(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """COCOeval sorts objects into size ranges by "area", which COCO files may leave out: take the box's then."""
    annotation = dict(annotation)
    if "area" not in annotation:
        _, _, width, height = annotation.get("bbox") or (0, 0, 0, 0)
        annotation["area"] = float(width) * float(height)
    return annotation


def _has_mask(annotation: Mapping[str, Any]) -> bool:
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, Mapping):
        return bool(segmentation.get("counts"))
    return bool(segmentation) and any(len(polygon) >= 6 for polygon in segmentation)
