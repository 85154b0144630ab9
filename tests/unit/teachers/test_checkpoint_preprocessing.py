"""A weights folder's preprocessor_config.json drives the loaded teacher's inputs (the checkpoint's values are used,
not the schema's defaults, with a warning naming what changed); the stock one changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, GroundingDinoImageProcessor, SamImageProcessor

from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig
from mlcore.finetune.inputs import dino_preprocessor
from mlcore.teachers import load_grounding_dino, load_sam
from tests.unit.teachers.conftest import noise_image
from tests.unit.teachers.test_weights import save_as

TOLERANCE = 1e-5


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_derived_sams_normalisation_reaches_the_model_inputs(tiny_sam, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    folder = save_as(tiny_sam, tmp_path / "sam_vit_b")
    # e.g. a medical SAM: grey-level statistics instead of ImageNet's, at the tiny model's 256 px.
    SamImageProcessor(image_mean=[0.2, 0.2, 0.2], image_std=[0.15, 0.15, 0.15], size={"longest_edge": 256},
                      pad_size={"height": 256, "width": 256}).save_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="mlcore"):
        teacher = load_sam("sam_vit_b", tmp_path)
    assert teacher.preprocessor().config.mean == pytest.approx((51.0,) * 3)  # 0.2 x 255, on the preset's scale
    (message,) = [m for m in warnings_of(caplog) if "preprocessor_config.json" in m]
    assert "sam_vit_b preset" in message and "mean (123.675, 116.28, 103.53) -> (51" in message
    assert "using the checkpoint's values" in message

    image = noise_image(200, 310, seed=5)
    reference = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(teacher.preprocessor()(image).pixel_values, reference, rtol=0, atol=TOLERANCE)


def test_the_stock_processor_changes_nothing_and_says_nothing(tiny_sam, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    folder = save_as(tiny_sam, tmp_path / "sam_vit_h")
    SamImageProcessor().save_pretrained(folder)  # what facebook/sam-vit-* publish
    with caplog.at_level(logging.WARNING, logger="mlcore"):
        teacher = load_sam("sam_vit_h", tmp_path)
    assert teacher.checkpoint_preprocessing == {} and warnings_of(caplog) == []
    assert teacher.preprocessor().config.mean == (123.675, 116.28, 103.53)


def test_grounding_dino_takes_the_checkpoints_sizes_and_statistics_and_training_edges_still_win(
        tiny_dino, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = save_as(tiny_dino, tmp_path / "grounding_dino_swint")
    processor = GroundingDinoImageProcessor(size={"shortest_edge": 192, "longest_edge": 240},
                                            image_mean=[0.45, 0.45, 0.45], image_std=[0.25, 0.25, 0.25])
    processor.save_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="mlcore"):
        teacher = load_grounding_dino("grounding_dino_swint", tmp_path)
    config = teacher.preprocessor().config
    assert (config.shortest_edge, config.longest_edge) == (192, 240)
    assert config.mean == pytest.approx((0.45,) * 3) and config.std == pytest.approx((0.25,) * 3)
    assert any("shortest_edge 800 -> 192" in message for message in warnings_of(caplog))
    image = noise_image(150, 260, seed=6)
    reference = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(teacher.preprocessor()(image).pixel_values, reference, rtol=0, atol=TOLERANCE)

    training = dino_preprocessor(teacher, TeacherGroundingDinoLoraConfig.model_validate(
        {"training": {"shortest_edge": 160, "longest_edge": 200}})).config
    assert (training.shortest_edge, training.longest_edge) == (160, 200)  # the config's explicit edges
    assert training.mean == pytest.approx((0.45,) * 3)  # and still the checkpoint's statistics
