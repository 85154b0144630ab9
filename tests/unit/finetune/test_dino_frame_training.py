"""The box frame measured by training (issue 13 c): LoRA fine-tuning of the shipped `shapes` Grounding DINO on images of
several sizes, which the feature cache pads to one canvas. Labels over each image's valid region (transformers' frame)
keep the detector right; labels over the padded canvas (mlcore before issue 13) teach it wrong boxes. Reverting the
label frame fails this test; `test_dino_frame_quality.py` covers the decoding side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlcore.config.schemas.training import TrainingDynamicsConfig
from mlcore.data.demo import write_scenes_coco
from mlcore.data.prepare import prepare_dataset
from mlcore.data.shapes_world import SHAPES, draw_scene
from mlcore.finetune.setup import train_teachers
from mlcore.preprocess.meta import PreprocessMeta

SIZES = [(256, 160), (160, 256), (160, 160)]  # width, height: each pads differently into the run's canvas
EPOCHS = 12


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(8)
    scenes = [draw_scene(rng, "studio", SIZES[index % len(SIZES)]) for index in range(24)]
    annotations = write_scenes_coco(root / "scenes", scenes, SHAPES, mode="boxes")
    report = prepare_dataset(annotations, output_dir=root / "prepared", split="train:0.75,val:0.25", seed=0,
                             progress=False)
    assert report.usable
    return root / "prepared"


def _canvas_labels(self: PreprocessMeta, boxes):
    """The reverted label frame: cx, cy, w, h over the padded canvas instead of the valid region."""
    model = self.boxes_to_model(boxes)
    height, width = self.input_size
    x0, y0, x1, y1 = model.float().unbind(-1)
    return torch.stack([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height], -1)


def _late_val_map50(data: Path, output: Path) -> float:
    """Val mAP50 averaged over the last four epochs (one epoch's value swings by a few points)."""
    result = train_teachers(data / "train.json", data / "val.json", output, preset="shapes", device="cpu",
                            epochs=EPOCHS, batch_size=4, progress=False,
                            dynamics=TrainingDynamicsConfig(scheduler="constant", warmup_epochs=0.0, seed=3))
    return float(np.mean([epoch["map50"] for epoch in result.runs["grounding_dino"].epochs[-4:]]))


def test_training_on_valid_region_labels_beats_canvas_labels(mixed_sizes: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # measured: 0.71 vs 0.53 (zero-shot 0.51): the canvas labels undo what the valid-region ones teach
    valid_region = _late_val_map50(mixed_sizes, tmp_path / "valid_region")
    monkeypatch.setattr(PreprocessMeta, "boxes_to_normalized_cxcywh", _canvas_labels)
    canvas = _late_val_map50(mixed_sizes, tmp_path / "canvas")
    assert valid_region >= canvas + 0.1, (valid_region, canvas)
