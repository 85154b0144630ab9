"""compute_map is pycocotools' own numbers, per class by name, masks only where both sides have them; mask IoU."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mlcore.data.coco_dataset import CocoDataset
from mlcore.evaluation import compute_iou, compute_map, mask_to_rle
from tests.unit.evaluation.conftest import gt_masks, noisy_results, read_json


def direct_stats(annotation_file: Path, results_file: Path, iou_type: str) -> list[float]:
    """pycocotools run the way its README shows, on the files themselves."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotation_file))
        evaluation = COCOeval(truth, truth.loadRes(str(results_file)), iouType=iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(value) for value in evaluation.stats]


def perfect_results(data: dict[str, Any]) -> list[dict[str, Any]]:
    masks = gt_masks(data)
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
             "segmentation": mask_to_rle(masks[a["id"]])} for a in data["annotations"]]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_numbers_equal_pycocotools_run_directly(demo_split: tuple[Path, CocoDataset], tmp_path: Path,
                                                iou_type: str) -> None:
    annotation_file, _ = demo_split
    key = "bbox" if iou_type == "bbox" else "segmentation"
    results = [{k: v for k, v in r.items() if k in ("image_id", "category_id", "score", key)}
               for r in noisy_results(read_json(annotation_file), seed=1)]
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    expected = direct_stats(annotation_file, results_file, iou_type)
    assert 0.05 < expected[0] < 0.95  # imperfect on purpose: equality would be trivial at 0 or 1
    scores = compute_map(annotation_file, results, iou_types=[iou_type])
    measured = scores.bbox if iou_type == "bbox" else scores.segm
    assert measured is not None
    assert measured.stats == pytest.approx(expected, abs=1e-12)
    assert (measured.map50_95, measured.map50, measured.map75) == pytest.approx(expected[:3], abs=1e-12)


def test_perfect_predictions_score_one_for_boxes_and_masks(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    scores = compute_map(annotation_file, perfect_results(read_json(annotation_file)), [1, 2, 3])
    assert scores.metrics() == pytest.approx({"map50_95": 1.0, "map50": 1.0, "map75": 1.0, "mask_map50_95": 1.0,
                                              "mask_map50": 1.0, "mask_map75": 1.0})


def test_per_class_ap_is_keyed_by_category_name(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    data = read_json(annotation_file)
    results = [r for r in perfect_results(data) if r["category_id"] != 2]  # every circle missed
    scores = compute_map(annotation_file, results, {"0": 1, "1": 2, "2": 3})
    for measured in (scores.bbox, scores.segm):
        assert set(measured.per_class) == {"square", "circle", "triangle"}
        present = {name for name, ap in measured.per_class.items() if ap.num_ground_truth}
        assert measured.per_class["circle"].ap50_95 == (0.0 if "circle" in present else None)
        for name in present - {"circle"}:
            assert measured.per_class[name].ap50_95 == pytest.approx(1.0)
            assert measured.per_class[name].ap50 == pytest.approx(1.0)
        known = [ap.ap50_95 for ap in measured.per_class.values() if ap.ap50_95 is not None]
        assert measured.map50_95 == pytest.approx(np.mean(known))  # COCO's mAP is the mean of the classes' APs


def test_masks_are_scored_only_when_the_ground_truth_and_the_results_have_them(
        demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    data = read_json(annotation_file)
    with_masks = perfect_results(data)
    boxes_only = [{k: v for k, v in r.items() if k != "segmentation"} for r in with_masks]
    assert compute_map(data, with_masks).segm is not None
    assert compute_map(data, boxes_only).segm is None
    no_masks = {**data, "annotations": [{**a, "segmentation": []} for a in data["annotations"]]}
    result = compute_map(no_masks, with_masks)
    assert result.segm is None and result.mask_map50_95 is None and "mask_map50_95" not in result.metrics()
    assert result.map50_95 == pytest.approx(1.0)


def test_mask_only_results_are_scored_for_boxes_by_their_masks_box(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    masks_only = [{k: v for k, v in r.items() if k != "bbox"} for r in perfect_results(read_json(annotation_file))]
    scores = compute_map(annotation_file, masks_only)
    assert scores.mask_map50_95 == pytest.approx(1.0)
    assert scores.map50 == pytest.approx(1.0)  # polygon boxes vs raster boxes: close, not equal at IoU 0.95


def test_class_agnostic_has_one_entry_and_ignores_categories(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    swapped = [{**r, "category_id": r["category_id"] % 3 + 1} for r in perfect_results(read_json(annotation_file))]
    assert compute_map(annotation_file, swapped).map50_95 < 0.5
    agnostic = compute_map(annotation_file, swapped, class_agnostic=True)
    assert agnostic.map50_95 == pytest.approx(1.0) and agnostic.mask_map50_95 == pytest.approx(1.0)
    assert list(agnostic.bbox.per_class) == ["all classes"]


def test_no_results_score_zero_and_serialise(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    scores = compute_map(annotation_file, [], [1, 2, 3])
    assert scores.metrics() == {"map50_95": 0.0, "map50": 0.0, "map75": 0.0}
    assert json.loads(json.dumps(scores.to_dict()))["bbox"]["per_class"]


def test_iou_of_hand_made_masks_is_exact() -> None:
    a = np.zeros((6, 8), dtype=bool)
    b = np.zeros((6, 8), dtype=bool)
    a[1:4, 1:5] = True  # 12 pixels
    b[2:5, 3:7] = True  # 12 pixels, 4 shared
    assert compute_iou(a, b) == pytest.approx(4 / 20)
    assert compute_iou(a, a) == 1.0
    assert compute_iou(a, np.zeros_like(a)) == 0.0
    assert compute_iou(np.zeros_like(a), np.zeros_like(a)) == 0.0
    assert compute_iou(torch.from_numpy(a), torch.from_numpy(b).to(torch.uint8)) == pytest.approx(0.2)


def test_iou_of_mask_stacks_is_every_pair() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.random((3, 9, 7)) > 0.5, rng.random((4, 9, 7)) > 0.5
    matrix = compute_iou(first, second)
    assert matrix.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            expected = (first[i] & second[j]).sum() / (first[i] | second[j]).sum()
            assert matrix[i, j] == pytest.approx(expected, abs=1e-12)
    assert compute_iou(first[1], second).shape == (4,)
    assert compute_iou(first, second[2]) == pytest.approx(matrix[:, 2])
    with pytest.raises(ValueError, match="one size"):
        compute_iou(first, np.zeros((2, 5, 5)))
