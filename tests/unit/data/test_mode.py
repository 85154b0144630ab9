"""Mode detection follows the documented rule, including mixed datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcore.data.mode import MIN_MASK_FRACTION
from mlcore.data.prepare import prepare_dataset

from .conftest import CocoBuilder


def outline(x: float, y: float, size: float) -> list[list[float]]:
    """A five-corner outline: a mask with a shape, unlike a rectangle (which counts as a box)."""
    return [[x, y, x + size, y, x + size, y + size, x + size / 2, y + size * 1.5, x, y + size]]


def dataset(coco: CocoBuilder, masked: int, boxed_only: int, with_bbox: bool = True) -> Path:
    coco.category(1, "cat")
    coco.image(1, width=200, height=200)
    for i in range(masked):
        coco.annotation(1, 1, segmentation=outline(5 + i, 5, 10), **({"bbox": [5 + i, 5, 10, 15]} if with_bbox else {}))
    for i in range(boxed_only):
        coco.annotation(1, 1, bbox=[5 + i, 50, 10, 10], segmentation=[])
    return coco.write()


def mode_of(path: Path, **kwargs):
    report = prepare_dataset(path, progress=False, **kwargs)
    return report, {f.code for f in report.findings}


def test_boxes_only_is_detection_only(coco):
    report, _ = mode_of(dataset(coco, masked=0, boxed_only=3))
    assert report.annotation_mode == "detection_only"


def test_masks_without_boxes_is_segmentation_only(coco):
    report, _ = mode_of(dataset(coco, masked=3, boxed_only=0, with_bbox=False))
    assert report.annotation_mode == "segmentation_only"
    mode_config = json.loads(Path(report.outputs["mode_config"]).read_text())
    assert mode_config["recommended_teachers"] == ["sam"]
    assert mode_config["recommended_student"] == "fastsam"  # one class: FastSAM fits
    assert mode_config["distillation_config"]["template"] == "kd_segmentation_only"


def test_masks_and_boxes_is_detection_and_segmentation(coco):
    report, codes = mode_of(dataset(coco, masked=3, boxed_only=0))
    assert report.annotation_mode == "detection_and_segmentation" and "mixed_masks" not in codes
    mode_config = json.loads(Path(report.outputs["mode_config"]).read_text())
    assert mode_config["recommended_teachers"] == ["grounding_dino", "sam"]
    assert mode_config["recommended_student"] == "yolov8n-seg"


def test_mixed_with_enough_masks_trains_both(coco):
    report, codes = mode_of(dataset(coco, masked=3, boxed_only=2))
    assert 3 / 5 >= MIN_MASK_FRACTION
    assert report.annotation_mode == "detection_and_segmentation" and "mixed_masks" in codes


def test_mixed_with_few_masks_falls_back_to_detection(coco):
    report, codes = mode_of(dataset(coco, masked=1, boxed_only=4))
    assert report.annotation_mode == "detection_only" and "masks_ignored" in codes


def test_crowd_regions_do_not_decide_the_mode(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    coco.annotation(1, 1, iscrowd=1, segmentation={"size": [80, 100], "counts": [85, 10, 7905]})
    report, _ = mode_of(coco.write())
    assert report.annotation_mode == "detection_only"


def test_forced_mode(coco):
    path = dataset(coco, masked=3, boxed_only=0)
    report, codes = mode_of(path, mode="detection_only")
    assert report.annotation_mode == "detection_only" and "mode_forced" in codes


def test_forcing_a_mask_mode_without_masks_is_an_error(coco):
    report, codes = mode_of(dataset(coco, masked=0, boxed_only=2), mode="detection_and_segmentation")
    assert not report.usable and "mode_needs_masks" in codes


@pytest.mark.parametrize(("mode", "classes", "student"), [
    ("detection_only", 3, "yolov8n"), ("segmentation_only", 3, "yolov8n-seg"),
    ("segmentation_only", 1, "fastsam"), ("detection_and_segmentation", 1, "yolov8n-seg"),
])
def test_recommended_student(mode, classes, student):
    from mlcore.data.mode import recommended_student

    assert recommended_student(mode, classes) == student
