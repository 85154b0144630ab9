"""COCO detection-result records: from predictions, to and from a results file, and class index -> category id.

A record is {"image_id", "category_id", "score", "bbox": [x, y, w, h]} plus "segmentation" (compressed RLE, text
counts) when the prediction has masks: one record per detection carries both, as detectron2 and ultralytics write
them; the scorer uses the key the IoU type needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlcore.data.masks import mask_to_rle
from mlcore.errors import ConfigError, DatasetError
from mlcore.evaluation.coco_map import IouType
from mlcore.io import write_json_atomic

CategoryOf = Callable[[int], int]  # class index -> COCO category id
_REQUIRED = ("image_id", "category_id", "score")


@dataclass
class Predictions:
    """A model's COCO records on a split, or on one shard of it, with everything scoring them needs.

    image_ids: the images predicted, in dataset order; num_images: how many (a merge of shards: all of them);
    categories, iou_types, class_agnostic: what `compute_map` measures; seconds: time spent predicting.
    """

    name: str
    records: list[dict[str, Any]] = field(repr=False)
    image_ids: list[int] = field(repr=False)
    categories: list[int]
    iou_types: list[IouType]
    class_agnostic: bool
    settings: dict[str, Any]
    seconds: float = 0.0

    @property
    def num_images(self) -> int:
        return len(self.image_ids)


class Prediction(Protocol):
    """What every mlcore model returns per image (StudentPrediction, Detections, TeacherPrediction)."""

    boxes: Any
    scores: Any
    class_ids: Any
    masks: Any


def box_results(image_id: int, prediction: Prediction, category_of: CategoryOf) -> list[dict[str, Any]]:
    """COCO detection records (xywh boxes) of one image's prediction."""
    records = []
    for (x1, y1, x2, y2), score, class_id in zip(prediction.boxes.tolist(), prediction.scores.tolist(),
                                                 prediction.class_ids.tolist()):
        records.append({"image_id": int(image_id), "category_id": int(category_of(class_id)),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return records


def mask_results(image_id: int, prediction: Prediction, category_of: CategoryOf) -> list[dict[str, Any]]:
    """COCO segmentation records (RLE) of one image's prediction."""
    assert prediction.masks is not None
    return [{"image_id": int(image_id), "category_id": int(category_of(class_id)),
             "segmentation": mask_to_rle(_numpy(mask)), "score": float(score)}
            for mask, score, class_id in zip(prediction.masks, prediction.scores.tolist(),
                                             prediction.class_ids.tolist())]


def prediction_results(image_id: int, prediction: Prediction, category_of: CategoryOf) -> list[dict[str, Any]]:
    """One record per detection: its box, and its mask where the prediction has masks."""
    records = box_results(image_id, prediction, category_of)
    if prediction.masks is not None:
        for record, with_mask in zip(records, mask_results(image_id, prediction, category_of)):
            record["segmentation"] = with_mask["segmentation"]
    return records


def category_mapping(class_names: Sequence[str], annotations: Mapping[str, Any],
                     category_ids: Mapping[str, int] | None, *, class_agnostic: bool = False) -> dict[int, int]:
    """Class index -> COCO category id for a model's classes.

    category_ids: the mode config's {"index": id}; None: match the model's class names to the annotation file's
    category names. class_agnostic: every class maps to the first category (only matches count, not classes).
    """
    categories = {str(category.get("name")): int(category["id"]) for category in annotations.get("categories", [])}
    if category_ids is None:
        if class_agnostic and categories:
            return dict.fromkeys(range(len(class_names)), min(categories.values()))
        missing = [name for name in class_names if name not in categories]
        if missing:
            raise ConfigError(f"classes {missing} of the model are not categories of the annotation file "
                              f"({sorted(categories)})", where="category_ids",
                              fix="pass the mode config's category_ids ({\"index\": category id})")
        return {index: categories[name] for index, name in enumerate(class_names)}
    if not category_ids:
        raise ConfigError("no categories to evaluate", where="category_ids", fix="pass the mode config's category_ids")
    if class_agnostic:
        first = min(int(category) for category in category_ids.values())
        return dict.fromkeys(range(max(len(class_names), 1)), first)
    missing_ids = [index for index in range(len(class_names)) if str(index) not in category_ids]
    if missing_ids:
        raise ConfigError(f"classes {missing_ids} of the model have no COCO category id", where="category_ids",
                          fix="pass the mode config's category_ids for the classes the model was trained on")
    return {index: int(category_ids[str(index)]) for index in range(len(class_names))}


def read_results(path: str | os.PathLike[str], annotations: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A COCO results file (a JSON list of records), checked so pycocotools' asserts never reach a user.

    annotations: when given, every record's image_id must be one of its images.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
    except FileNotFoundError:
        raise DatasetError("results file not found", where=str(path), fix="pass the COCO results JSON") from None
    except json.JSONDecodeError as error:
        raise DatasetError(f"not valid JSON: {error}", where=str(path), fix="pass a COCO results JSON") from None
    if not isinstance(records, list):
        raise DatasetError("a COCO results file is a JSON list of detections", where=str(path),
                           fix='write [{"image_id", "category_id", "score", "bbox" and/or "segmentation"}, ...]')
    for position, record in enumerate(records):
        if not isinstance(record, dict) or any(key not in record for key in _REQUIRED) or (
                "bbox" not in record and "segmentation" not in record):
            raise DatasetError("a detection needs image_id, category_id, score and a bbox or a segmentation",
                               where=f"{path}[{position}]", fix="write COCO detection-result records")
    if annotations is not None:
        known = {int(image["id"]) for image in annotations.get("images", [])}
        unknown = sorted({int(record["image_id"]) for record in records} - known)
        if unknown:
            raise DatasetError(f"{len(unknown)} image ids are not in the annotation file (first: {unknown[:5]})",
                               where=str(path), fix="evaluate against the annotation file the predictions were "
                                                    "made for")
    return records


def write_results(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> Path:
    """Write records as a COCO results file (atomically)."""
    write_json_atomic(path, list(records))
    return Path(path)


def _numpy(mask: Any) -> Any:
    return mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask
