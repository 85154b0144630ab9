"""Statistics and the generated demo dataset."""

from __future__ import annotations

import json
import os

import pytest

from mlcore.data.demo import make_demo_dataset
from mlcore.data.prepare import prepare_dataset

from .conftest import CocoBuilder


def test_statistics(coco: CocoBuilder):
    coco.category(1, "cat")
    coco.category(2, "dog")
    coco.image(1, width=200, height=200)
    coco.image(2, width=200, height=100)
    coco.image(3)
    coco.annotation(1, 1, bbox=[0, 0, 10, 10])   # small
    coco.annotation(1, 2, bbox=[0, 0, 50, 50])   # medium
    coco.annotation(2, 2, bbox=[0, 0, 150, 90])  # large
    report = prepare_dataset(coco.write(), progress=False)
    stats = report.statistics
    assert stats.object_sizes == {"small": 1, "medium": 1, "large": 1}
    assert [(c.name, c.annotations, c.images) for c in stats.classes] == [("cat", 1, 1), ("dog", 2, 2)]
    assert stats.negative_images == 1
    assert stats.objects_per_image.max == 2 and stats.objects_per_image.min == 0
    assert stats.image_width.max == 200 and stats.image_height.min == 80
    assert dict(stats.most_common_sizes) == {"200x200": 1, "200x100": 1, "100x80": 1}


@pytest.mark.parametrize(("mode", "expected"), [("both", "detection_and_segmentation"),
                                                 ("boxes", "detection_only"), ("masks", "segmentation_only")])
def test_demo_data_is_valid_in_each_mode(tmp_path, mode, expected):
    path = make_demo_dataset(tmp_path / mode, mode=mode, num_images=12, seed=3)
    data = json.loads(path.read_text())
    report = prepare_dataset(path, progress=False, image_check="full")
    assert report.usable and report.annotation_mode == expected
    assert report.counts["error"] == 0 and report.counts["warning"] == 0
    assert report.statistics.negative_images == 2
    if mode == "masks":
        assert all("bbox" not in a for a in data["annotations"])
    if mode == "boxes":
        assert all(a["segmentation"] == [] for a in data["annotations"])


def test_demo_data_is_reproducible(tmp_path):
    first = make_demo_dataset(tmp_path / "a", num_images=5, seed=9).read_text()
    second = make_demo_dataset(tmp_path / "b", num_images=5, seed=9).read_text()
    assert first == second


def test_regenerating_the_demo_leaves_identical_images_untouched(tmp_path):
    """The pipeline regenerates the demo on every run; unchanged images keep their mtimes, so cached stages hit."""
    make_demo_dataset(tmp_path, num_images=4, seed=9)
    image = tmp_path / "images" / "shapes_0001.jpg"
    before = image.stat().st_mtime_ns
    os.utime(image, ns=(before - 10**9, before - 10**9))  # as if written a second earlier
    make_demo_dataset(tmp_path, num_images=4, seed=9)
    assert image.stat().st_mtime_ns == before - 10**9
    make_demo_dataset(tmp_path, num_images=4, seed=10)  # other content: rewritten
    assert image.stat().st_mtime_ns != before - 10**9
