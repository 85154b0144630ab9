"""The training stages' view of a prepared file: samples with boxes, ids and masks that match the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_demo_dataset
from mlcore.data.masks import decode_to_mask
from mlcore.data.prepare import prepare_dataset


def test_samples_match_the_cleaned_file(tmp_path):
    source = make_demo_dataset(tmp_path / "demo", num_images=8, seed=4)
    report = prepare_dataset(source, progress=False)
    cleaned = Path(report.outputs["cleaned"])
    dataset = CocoDataset(cleaned, images_dir=report.images_root)
    data = json.loads(cleaned.read_text())
    assert len(dataset) == len(data["images"]) == 8

    sample = dataset[0]
    expected = [a for a in data["annotations"] if a["image_id"] == sample.image_id]
    assert sample.image_path.is_file()
    assert np.allclose(sample.boxes, [a["bbox"] for a in expected], atol=1e-4)
    assert sample.category_ids.tolist() == [a["category_id"] for a in expected]
    masks = sample.masks()
    assert masks.shape == (len(expected), sample.height, sample.width)
    for mask, ann in zip(masks, expected):
        assert np.array_equal(mask, decode_to_mask(ann["segmentation"], sample.height, sample.width))
    assert sample.has_masks.all()

    negative = dataset[len(dataset) - 1]  # the demo's last images are negatives
    assert negative.boxes.shape == (0, 4) and negative.masks().shape == (0, negative.height, negative.width)


def test_boxes_only_samples_have_empty_masks(tmp_path):
    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=3, seed=1)
    sample = CocoDataset(source)[0]
    assert not sample.has_masks.any() and sample.masks().sum() == 0 and len(sample.boxes) > 0
