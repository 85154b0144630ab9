"""preprocessor_config.json onto a preset's section: the stock processors change nothing, a derived checkpoint's
values are taken (and give what its own transformers processor gives), what cannot be reproduced is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GroundingDinoImageProcessor, SamImageProcessor

from mlcore.errors import ModelError
from mlcore.preprocess import for_model
from mlcore.preprocess.processor_config import PROCESSOR_CONFIG, read_processor_config
from tests.unit.preprocess.conftest import noise_image

TOLERANCE = 1e-5  # as test_reference_parity: float rounding only


def saved(processor, folder: Path) -> Path:
    processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("family", "processor"), [("grounding_dino", GroundingDinoImageProcessor),
                                                   ("sam", SamImageProcessor)])
def test_the_stock_processors_match_the_presets_defaults(family: str, processor, tmp_path: Path) -> None:
    """What transformers writes for the published checkpoints (its defaults) changes nothing: SAM's 0.485 on a 0-1
    scale is the preset's 123.675 on 0-255."""
    found = read_processor_config(saved(processor(), tmp_path), for_model(family).config)
    assert found is not None and found.values == {} and found.differences == () and found.unsupported == ()


def test_a_medical_sam_normalisation_is_used_and_gives_its_processors_inputs(tmp_path: Path) -> None:
    processor = SamImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
                                  size={"longest_edge": 512}, pad_size={"height": 512, "width": 512})
    found = read_processor_config(saved(processor, tmp_path), for_model("sam").config)
    assert found.values["mean"] == pytest.approx((127.5,) * 3) and found.values["std"] == pytest.approx((63.75,) * 3)
    assert found.values["longest_edge"] == 512 and found.values["pad_to"] == (512, 512)
    assert any(text.startswith("mean (123.675, 116.28, 103.53) -> (127.5") for text in found.differences)

    ours = for_model("sam", {"sam": found.values})
    image = noise_image(300, 451, seed=3)
    reference = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(ours(image).pixel_values, reference, rtol=0, atol=TOLERANCE)


def test_grounding_dino_sizes_and_normalisation_follow_the_file(tmp_path: Path) -> None:
    processor = GroundingDinoImageProcessor(size={"shortest_edge": 480, "longest_edge": 640},
                                            image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4])
    found = read_processor_config(saved(processor, tmp_path), for_model("grounding_dino").config)
    assert found.values == {"shortest_edge": 480, "longest_edge": 640, "mean": pytest.approx((0.5, 0.4, 0.3)),
                            "std": pytest.approx((0.2, 0.3, 0.4))}
    ours = for_model("grounding_dino", {"grounding_dino": found.values})
    image = noise_image(417, 650, seed=4)
    reference = processor(images=image, return_tensors="pt")
    got = ours(image)
    assert got.pixel_values.shape == reference["pixel_values"][0].shape
    assert torch.allclose(got.pixel_values, reference["pixel_values"][0], rtol=0, atol=TOLERANCE)


def test_no_normalisation_and_an_older_size_format_are_read(tmp_path: Path) -> None:
    (tmp_path / PROCESSOR_CONFIG).write_text('{"do_normalize": false, "size": 600, "max_size": 1000}')
    found = read_processor_config(tmp_path, for_model("grounding_dino").config)
    assert found.values == {"shortest_edge": 600, "longest_edge": 1000, "mean": (0.0, 0.0, 0.0),
                            "std": (1.0, 1.0, 1.0)}
    # No rescale and no normalisation, on SAM's 0-255 scale: the raw pixel values.
    (tmp_path / PROCESSOR_CONFIG).write_text('{"do_normalize": false, "do_rescale": false}')
    assert read_processor_config(tmp_path, for_model("sam").config).values == {"mean": (0.0, 0.0, 0.0),
                                                                                "std": (1.0, 1.0, 1.0)}


def test_settings_mlcore_cannot_reproduce_are_named(tmp_path: Path) -> None:
    (tmp_path / PROCESSOR_CONFIG).write_text('{"resample": 3, "do_resize": false, "size": {"height": 800, '
                                             '"width": 800}}')
    found = read_processor_config(tmp_path, for_model("grounding_dino").config)
    assert len(found.unsupported) == 3
    assert any("resample: 3 (bicubic)" in text for text in found.unsupported)
    assert any("do_resize: false" in text for text in found.unsupported)
    assert any("fixed resize" in text for text in found.unsupported)


def test_a_missing_file_is_none_and_a_broken_one_a_model_error(tmp_path: Path) -> None:
    assert read_processor_config(tmp_path, for_model("sam").config) is None
    (tmp_path / PROCESSOR_CONFIG).write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read") as caught:
        read_processor_config(tmp_path, for_model("sam").config)
    assert caught.value.where == str(tmp_path / PROCESSOR_CONFIG)
    (tmp_path / PROCESSOR_CONFIG).write_text('{"size": {"shortest_edge": 900, "longest_edge": 500}}')
    with pytest.raises(ModelError, match="unusable inputs"):
        read_processor_config(tmp_path, for_model("grounding_dino").config)
