"""COCO mAP from result dicts: perfect predictions score 1, none score 0, masks and class-agnostic matching too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mlcore.evaluation import coco_map, mask_to_rle


def square(x: float, y: float, size: float) -> list[float]:
    return [x, y, x + size, y, x + size, y + size, x, y + size]


@pytest.fixture
def ground_truth() -> dict[str, Any]:
    images = [{"id": 1, "file_name": "a.png", "width": 80, "height": 60},
              {"id": 2, "file_name": "b.png", "width": 64, "height": 64}]
    objects = [(1, 1, 5, 10, 10, 20), (2, 1, 9, 40, 20, 16), (3, 2, 5, 8, 30, 24), (4, 2, 9, 30, 4, 12)]
    annotations = [{"id": ann_id, "image_id": image_id, "category_id": category, "bbox": [x, y, size, size],
                    "area": float(size * size), "iscrowd": 0, "segmentation": [square(x, y, size)]}
                   for ann_id, image_id, category, x, y, size in objects]
    categories = [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def box_results(data: dict[str, Any], category: dict[int, int] | None = None) -> list[dict[str, Any]]:
    return [{"image_id": a["image_id"], "category_id": (category or {}).get(a["category_id"], a["category_id"]),
             "bbox": list(a["bbox"]), "score": 0.9} for a in data["annotations"]]


def mask_results(data: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    results = []
    for annotation in data["annotations"]:
        height, width = sizes[annotation["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(annotation["segmentation"], height, width))
        results.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"],
                        "segmentation": mask_to_rle(mask_utils.decode(rle)), "score": 0.9})
    return results


def test_perfect_boxes_score_one_and_none_score_zero(ground_truth: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(ground_truth))
    assert coco_map(path, box_results(ground_truth), [5, 9]) == {"map50_95": 1.0, "map50": 1.0}
    assert coco_map(path, [], [5, 9]) == {"map50_95": 0.0, "map50": 0.0}


def test_wrong_boxes_score_zero(ground_truth: dict[str, Any]) -> None:
    shifted = [{**result, "bbox": [result["bbox"][0] + 30, 0, 4, 4]} for result in box_results(ground_truth)]
    assert coco_map(ground_truth, shifted, [5, 9]) == {"map50_95": 0.0, "map50": 0.0}


def test_perfect_masks_score_one(ground_truth: dict[str, Any]) -> None:
    results = mask_results(ground_truth)
    assert json.loads(json.dumps(results)) == results  # RLE with text counts: JSON-safe
    assert coco_map(ground_truth, results, [5, 9], iou_type="segm") == {"map50_95": 1.0, "map50": 1.0}
    assert coco_map(ground_truth, [], [5, 9], iou_type="segm") == {"map50_95": 0.0, "map50": 0.0}


def test_objects_without_a_mask_are_not_counted_for_masks(ground_truth: dict[str, Any]) -> None:
    results = mask_results(ground_truth)
    ground_truth["annotations"].append({"id": 9, "image_id": 1, "category_id": 5, "bbox": [60, 40, 10, 10],
                                        "area": 100.0, "iscrowd": 0, "segmentation": []})
    assert coco_map(ground_truth, results, [5, 9], iou_type="segm")["map50_95"] == 1.0
    assert coco_map(ground_truth, box_results(ground_truth)[:-1], [5, 9])["map50_95"] < 1.0


def test_class_agnostic_ignores_categories(ground_truth: dict[str, Any]) -> None:
    swapped = box_results(ground_truth, category={5: 9, 9: 5})
    assert coco_map(ground_truth, swapped, [5, 9])["map50_95"] == 0.0
    assert coco_map(ground_truth, swapped, [5, 9], class_agnostic=True) == {"map50_95": 1.0, "map50": 1.0}


def test_only_the_categories_asked_for_are_measured(ground_truth: dict[str, Any]) -> None:
    cats_only = [result for result in box_results(ground_truth) if result["category_id"] == 5]
    assert coco_map(ground_truth, cats_only, [5])["map50_95"] == 1.0
    assert coco_map(ground_truth, cats_only, [5, 9])["map50_95"] == pytest.approx(0.5)
    assert coco_map(ground_truth, box_results(ground_truth), [7]) == {"map50_95": 0.0, "map50": 0.0}


def test_mask_to_rle_round_trips() -> None:
    mask = np.zeros((7, 5), dtype=bool)
    mask[2:5, 1:3] = True
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 5]
    assert np.array_equal(mask_utils.decode({**rle, "counts": rle["counts"].encode()}), mask.astype(np.uint8))
