"""PR curves: COCO's 101 recall points per class, non-increasing, averaging to the class's AP; drawn as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlcore.data.coco_dataset import CocoDataset
from mlcore.evaluation import compute_map, compute_precision_recall, plot_pr_curves
from tests.unit.evaluation.conftest import noisy_results, read_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_curves_per_class_have_coco_shape_and_average_to_ap50(demo_split: tuple[Path, CocoDataset],
                                                              iou_type: str) -> None:
    annotation_file, _ = demo_split
    results = noisy_results(read_json(annotation_file), seed=2)
    curves = compute_precision_recall(annotation_file, results, [1, 2, 3], iou_type=iou_type)
    scores = compute_map(annotation_file, results, [1, 2, 3])
    measured = scores.bbox if iou_type == "bbox" else scores.segm
    with_truth = {name for name, ap in measured.per_class.items() if ap.num_ground_truth}
    assert {curve.name for curve in curves} == with_truth
    for curve in curves:
        assert curve.iou_type == iou_type and curve.iou_threshold == pytest.approx(0.5)
        assert curve.recall.shape == curve.precision.shape == curve.scores.shape == (101,)
        assert curve.recall[0] == 0.0 and curve.recall[-1] == 1.0
        assert np.all((curve.precision >= 0) & (curve.precision <= 1))
        assert np.all(np.diff(curve.precision) <= 1e-12)  # COCO's envelope never rises with recall
        assert curve.ap == pytest.approx(measured.per_class[curve.name].ap50)
    assert [curve.to_dict() for curve in measured.curves] == [curve.to_dict() for curve in curves]


def test_other_thresholds_and_bad_ones(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, _ = demo_split
    results = noisy_results(read_json(annotation_file), seed=2, masks=False)
    at_50 = compute_precision_recall(annotation_file, results)
    at_75 = compute_precision_recall(annotation_file, results, iou_threshold=0.75)
    assert sum(c.ap for c in at_75) <= sum(c.ap for c in at_50)
    with pytest.raises(ValueError, match="not one of COCO's thresholds"):
        compute_precision_recall(annotation_file, results, iou_threshold=0.42)
    assert compute_precision_recall(annotation_file, []) == []


def test_plot_writes_a_png(demo_split: tuple[Path, CocoDataset], tmp_path: Path) -> None:
    annotation_file, _ = demo_split
    curves = compute_precision_recall(annotation_file, noisy_results(read_json(annotation_file), seed=3))
    path = plot_pr_curves(curves, tmp_path / "plots" / "pr.png", title="boxes")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    assert plot_pr_curves([], tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
