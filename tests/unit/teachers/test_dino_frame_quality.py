"""The box frame measured with a detector that knows something: the shipped `shapes` Grounding DINO, on images of
several sizes padded into one batch, scores far higher with boxes over each image's valid region (mlcore's frame,
transformers' own) than over the padded canvas (mlcore's frame before issue 13). Reverting the frame fails this."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import write_scenes_coco
from mlcore.data.shapes_world import SHAPES, draw_scene
from mlcore.finetune.evaluation import evaluate_grounding_dino
from mlcore.preprocess.meta import PreprocessMeta
from mlcore.teachers import load_grounding_dino
from mlcore.teachers.prompts import build_prompt_chunks

SIZES = [(256, 160), (160, 256), (160, 160)]  # width, height: one batch of three pads each differently


def _canvas_frame(meta: PreprocessMeta, boxes, clip: bool = True):
    """The reverted decoding: cx, cy, w, h read over the padded canvas instead of the valid region."""
    cx, cy, w, h = boxes.float().unbind(-1)
    height, width = meta.input_size
    model_xyxy = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                              (cy + h / 2) * height], dim=-1)
    return meta.boxes_from_model(model_xyxy, clip=clip)


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CocoDataset]:
    rng = np.random.default_rng(21)
    scenes = [draw_scene(rng, "studio", SIZES[index % len(SIZES)]) for index in range(18)]
    annotations = write_scenes_coco(tmp_path_factory.mktemp("mixed"), scenes, SHAPES, mode="boxes")
    return annotations, CocoDataset(annotations, annotations.parent / "images")


def test_valid_region_boxes_score_higher_than_canvas_boxes(mixed_sizes, monkeypatch: pytest.MonkeyPatch):
    annotations, dataset = mixed_sizes
    teacher = load_grounding_dino("shapes")
    chunks = build_prompt_chunks(teacher.tokenizer, list(SHAPES))
    category_ids = {str(index): index + 1 for index in range(len(SHAPES))}

    def score() -> float:
        return evaluate_grounding_dino(teacher, dataset, annotations, chunks, category_ids,
                                       batch_size=len(SIZES)).metrics["map50"]

    valid_region = score()
    monkeypatch.setattr(PreprocessMeta, "boxes_from_normalized_cxcywh", _canvas_frame)
    canvas = score()
    assert valid_region >= 0.4, valid_region
    assert valid_region >= canvas + 0.2, (valid_region, canvas)
