"""The preview grid: one tile per sample, in a near-square layout, for box-only and mask datasets alike."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlcore.augmentation import get_pipeline
from mlcore.augmentation.pipeline import AugmentedSample
from mlcore.augmentation.preview import (
    PALETTE,
    TILE,
    dataset_has_masks,
    draw_tile,
    grid_layout,
    pick_indices,
    write_preview,
)
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_demo_dataset


@pytest.mark.parametrize("n, layout", [(1, (1, 1)), (4, (2, 2)), (5, (2, 3)), (16, (4, 4)), (17, (4, 5))])
def test_grid_layout_is_near_square(n, layout):
    assert grid_layout(n) == layout


@pytest.mark.parametrize("demo_mode, pipeline_mode", [("boxes", "detection_only"),
                                                      ("masks", "detection_and_segmentation")])
def test_preview_of_box_and_mask_datasets(tmp_path, demo_mode, pipeline_mode):
    annotations = make_demo_dataset(tmp_path / demo_mode, mode=demo_mode, num_images=5, seed=4)
    dataset = CocoDataset(annotations)
    assert dataset_has_masks(dataset, pick_indices(dataset, 7, 0)) == (demo_mode == "masks")
    pipeline = get_pipeline(["partially_hidden"], {"lighting": "variable"}, "medium", pipeline_mode, seed=0)
    result = write_preview(annotations, pipeline, tmp_path / "grid.png", n=7, seed=0, dataset=dataset)
    assert (result.rows, result.cols) == (3, 3) and result.objects > 0
    with Image.open(result.path) as image:
        assert image.size == (result.width, result.height) == (3 * TILE + 16, 3 * TILE + 16)


def test_sample_choice_uses_every_image_before_repeating(tmp_path):
    annotations = make_demo_dataset(tmp_path, num_images=4, seed=1)
    indices = pick_indices(CocoDataset(annotations), 10, seed=3)
    assert sorted(indices[:4]) == [0, 1, 2, 3] and indices[4:8] == indices[:4]


def test_tile_draws_boxes_and_masks_in_the_label_colour():
    image = np.full((100, 200, 3), 255, np.uint8)
    mask = np.zeros((1, 100, 200), np.uint8)
    mask[0, 20:60, 40:120] = 1
    sample = AugmentedSample(image, np.array([[40, 20, 80, 40]], np.float32), np.array([1]), mask, np.array([0]))
    tile = draw_tile(sample, {1: "square"}, 128)
    assert tile.shape == (128, 128, 3)
    # scale 128/200 = 0.64, image centred vertically (offset 32): the mask spans rows 45-70, columns 26-76
    color = np.array(PALETTE[1])
    tinted = tile[58, 50].astype(int)
    assert np.all(np.abs(tinted - (0.45 * color + 0.55 * 255)) <= 2)
    assert (tile[10, 50] == 114).all() and (tile[40, 10] == 255).all()  # letterbox, then plain image
    box_row = tile[round(32 + 20 * 0.64), 30:70]
    assert (np.abs(box_row.astype(int) - color).sum(axis=1) < 60).any()  # the box's top edge
