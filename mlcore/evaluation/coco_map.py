"""COCO mAP with pycocotools, boxes or masks, from result dicts: the numbers every model in mlcore is compared by.

Results are COCO's detection-result records: {"image_id", "category_id", "score", "bbox": [x, y, w, h]} for boxes,
{..., "segmentation": RLE} for masks (`mask_to_rle`); one record may carry both. Only the categories asked for are
measured; for masks, only ground-truth objects that have a mask count.

- `run_coco_eval(...)`: pycocotools' COCOeval, evaluated, accumulated and summarized (None: nothing to measure).
- `coco_map(...)`: {"map50_95", "map50"} of one IoU type (the short form the training loops log).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

IouType = Literal["bbox", "segm"]
IOU_TYPES: tuple[IouType, ...] = ("bbox", "segm")
AnnotationSource = str | os.PathLike[str] | Mapping[str, Any]
_RESULT_KEYS = {"bbox": ("image_id", "category_id", "score", "bbox"),
                "segm": ("image_id", "category_id", "score", "segmentation")}


def load_annotations(annotation_file: AnnotationSource) -> dict[str, Any]:
    """The COCO annotation dict (read from a path, or a shallow copy of a dict already loaded)."""
    if isinstance(annotation_file, Mapping):
        return dict(annotation_file)
    with open(annotation_file, encoding="utf-8") as handle:
        return json.load(handle)


def coco_map(annotation_file: AnnotationSource, results: Sequence[Mapping[str, Any]], category_ids: Sequence[int],
             iou_type: IouType = "bbox", class_agnostic: bool = False) -> dict[str, float]:
    """{"map50_95", "map50"} of `results` against the annotation file (a path or the loaded COCO dict).

    category_ids: the COCO categories measured (others are ignored on both sides). class_agnostic: a prediction
    matches any object whatever its category (pycocotools' useCats=0), as for FastSAM. 0.0 where there is nothing
    to measure (no results, or no ground truth of those categories).
    """
    evaluation = run_coco_eval(annotation_file, results, category_ids, iou_type, class_agnostic=class_agnostic)
    if evaluation is None:
        return {"map50_95": 0.0, "map50": 0.0}
    return {"map50_95": max(float(evaluation.stats[0]), 0.0), "map50": max(float(evaluation.stats[1]), 0.0)}


def run_coco_eval(annotation_file: AnnotationSource, results: Iterable[Mapping[str, Any]],
                  category_ids: Iterable[int], iou_type: IouType = "bbox", *, class_agnostic: bool = False) -> Any:
    """pycocotools' COCOeval after evaluate / accumulate / summarize, or None when there is nothing to measure.

    Results without the IoU type's key ("bbox" or "segmentation") are left out, except that a mask-only record gets
    its mask's box for "bbox" (as pycocotools' loadRes does); the others keep only that key, so a record carrying
    both a box and a mask is scored by the one asked for (loadRes would otherwise take the box for both).
    """
    if iou_type not in _RESULT_KEYS:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    wanted = {int(category) for category in category_ids}
    keys = _RESULT_KEYS[iou_type]
    detections = [{key: result[key] for key in keys} for result in map(_with_box, results)
                  if int(result["category_id"]) in wanted and result.get(keys[-1]) is not None]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        ground_truth = COCO()
        ground_truth.dataset = measured_ground_truth(annotation_file, wanted, iou_type)
        ground_truth.createIndex()
        if not detections or not ground_truth.dataset["annotations"]:
            return None
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType=iou_type)
        evaluation.params.catIds = sorted(wanted)
        evaluation.params.useCats = 0 if class_agnostic else 1
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def measured_ground_truth(annotation_file: AnnotationSource, categories: set[int],
                          iou_type: IouType) -> dict[str, Any]:
    """The annotation file's images with only the objects measured: those categories, and a mask for segm."""
    data = load_annotations(annotation_file)
    annotations = [_with_area(annotation) for annotation in data.get("annotations", [])
                   if int(annotation["category_id"]) in categories
                   and (iou_type == "bbox" or has_mask(annotation))]
    return {"info": data.get("info", {}), "images": list(data.get("images", [])),
            "categories": list(data.get("categories", [])), "annotations": annotations}


def has_mask(annotation: Mapping[str, Any]) -> bool:
    """Whether a COCO annotation carries a usable mask (an RLE, or a polygon with at least three points)."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, Mapping):
        return bool(segmentation.get("counts"))
    return bool(segmentation) and any(len(polygon) >= 6 for polygon in segmentation)


def _with_box(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """A mask-only result with its mask's bounding box added (RLE masks; COCO results carry no polygons)."""
    segmentation = result.get("segmentation")
    if result.get("bbox") is not None or not isinstance(segmentation, Mapping):
        return result
    from pycocotools import mask as mask_utils

    counts = segmentation["counts"]
    rle = {"size": list(segmentation["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return {**result, "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def _with_area(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """COCOeval sorts objects into size ranges by "area", which COCO files may leave out: take the box's then."""
    annotation = dict(annotation)
    if "area" not in annotation:
        _, _, width, height = annotation.get("bbox") or (0, 0, 0, 0)
        annotation["area"] = float(width) * float(height)
    return annotation
