"""The report's pictures of predictions and of training: drawn from the files and records the stages wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mlcore.data.demo import make_field_dataset
from mlcore.reporting.prediction_grid import PALETTE, TILE_WIDTH, prediction_grid
from mlcore.reporting.training_curves import Curve, training_curves


def test_the_grid_shows_ground_truth_and_each_models_confident_boxes(tmp_path: Path):
    annotations = make_field_dataset(tmp_path / "field", num_images=6, negatives=0, seed=2)
    truth = json.loads(annotations.read_text())
    first = truth["annotations"][0]
    x, y, w, h = first["bbox"]
    confident = {"image_id": first["image_id"], "category_id": first["category_id"], "bbox": [x, y, w, h],
                 "score": 0.9}
    faint = {**confident, "bbox": [0, 0, 40, 40], "score": 0.05}  # below the threshold: not drawn
    (tmp_path / "teacher.json").write_text(json.dumps([confident, faint]))

    path = prediction_grid(annotations, {"teachers": tmp_path / "teacher.json", "student": tmp_path / "none.json"},
                           tmp_path / "grid.png", images=2)

    grid = np.asarray(Image.open(path).convert("RGB"))
    assert grid.shape[1] == 2 * TILE_WIDTH  # ground truth + teachers; the missing student file is left out
    scale = TILE_WIDTH / truth["images"][0]["width"]
    colour = np.array(PALETTE[first["category_id"] % len(PALETTE)])
    top = 18 + round(y * scale)  # the header, then the first image's row
    edge = grid[top - 1:top + 2, TILE_WIDTH + round(x * scale) + 4]
    assert (np.abs(edge.astype(int) - colour).sum(axis=1) < 60).any()  # the teacher's box is drawn in its colour
    corner = grid[18 + 2:18 + 6, TILE_WIDTH + 2:TILE_WIDTH + 6].reshape(-1, 3)
    assert not any((np.abs(pixel.astype(int) - colour).sum() < 30) for pixel in corner)  # the faint one is not


def test_no_picture_without_an_image_that_has_objects(tmp_path: Path):
    annotations = make_field_dataset(tmp_path / "field", num_images=2, negatives=2)
    assert prediction_grid(annotations, {}, tmp_path / "grid.png") is None
    assert not (tmp_path / "grid.png").exists()


def test_training_curves_draw_every_run_with_epochs(tmp_path: Path):
    curves = [Curve("grounding_dino", "map50_95", [{"epoch": i, "train_loss": 9.0 - i, "map50_95": 0.1 * i}
                                                   for i in range(4)], before=0.05),
              Curve("student", "map50_95", [])]
    path = training_curves(curves, tmp_path / "curves.png")
    assert Image.open(path).size == (1100, 396)
    assert training_curves([Curve("student", "map50_95", [])], tmp_path / "none.png") is None
