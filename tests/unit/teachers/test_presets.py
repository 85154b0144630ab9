"""Presets: tiny models small and offline, full-size architectures as published (counted on the meta device)."""

from __future__ import annotations

import pytest
import torch

from mlcore.config.schemas.teachers import GroundingDinoLora, SamLora
from mlcore.errors import ConfigError
from mlcore.teachers import (
    apply_lora_to_grounding_dino,
    apply_lora_to_sam,
    get_preset,
    load_grounding_dino,
    load_sam,
    verify_lora_freezing,
)
from mlcore.teachers.presets import DINO_SPECIAL_TOKEN_IDS, tiny_tokenizer


def count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_tiny_tokenizer_puts_grounding_dinos_delimiters_at_their_bert_ids() -> None:
    tokenizer = tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids(list(DINO_SPECIAL_TOKEN_IDS)) == [101, 102, 1012, 1029]
    ids = tokenizer("cat . dog .")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(1012) == 2
    assert 100 not in tokenizer("Forklift-2 pallet_truck")["input_ids"]  # any ASCII word spells out: no [UNK]


def test_tiny_presets_are_small_and_say_which_inputs_they_need(tiny_dino, tiny_sam) -> None:
    assert 1_000_000 < count(tiny_dino.model) < 2_000_000
    assert 500_000 < count(tiny_sam.model) < 1_000_000
    assert (tiny_dino.preset.shortest_edge, tiny_dino.preset.longest_edge) == (160, 256)
    assert tiny_sam.preset.image_size == 256 == tiny_sam.model.config.vision_config.image_size
    assert tiny_sam.preprocessor().plan(300, 500).input_size == (256, 256)
    assert max(tiny_dino.preprocessor().plan(300, 500).input_size) <= 256
    assert tiny_dino.random_init and tiny_dino.tokenizer is not None


def test_random_weights_are_seeded_so_every_build_is_the_same_model() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    first, second = load_sam("tiny").model.state_dict(), load_sam("tiny").model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG is left alone


def test_unknown_presets_are_config_errors_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="grounding_dino_swint"):
        get_preset("grounding_dino", "swin_l")
    with pytest.raises(ConfigError, match="sam_vit_b"):
        load_sam("vit_b")


@pytest.mark.parametrize(("preset", "millions"), [("sam_vit_b", 93.7), ("sam_vit_l", 312.3), ("sam_vit_h", 641.1)])
def test_full_size_sam_architectures_match_the_published_sizes(preset: str, millions: float) -> None:
    with torch.device("meta"):
        teacher = load_sam(preset, random_init=True)
    assert count(teacher.model) / 1e6 == pytest.approx(millions, abs=0.1)
    assert teacher.preset.image_size == 1024
    teacher.model = apply_lora_to_sam(teacher.model, SamLora())
    report = verify_lora_freezing(teacher.model)
    assert len(report.trainable_modules) == 28 and report.ratio < 0.02


def test_full_size_grounding_dino_is_swin_t_with_bert_base_and_its_decoder_lora_stays_small() -> None:
    with torch.device("meta"):
        teacher = load_grounding_dino("grounding_dino_swint", random_init=True)
    assert count(teacher.model) / 1e6 == pytest.approx(172.3, abs=0.2)
    teacher.model = apply_lora_to_grounding_dino(teacher.model, GroundingDinoLora())
    report = verify_lora_freezing(teacher.model)
    assert report.trainable / 1e6 == pytest.approx(0.39, abs=0.01)
    assert report.ratio < 0.005
    assert len(report.trainable_modules) == 6 * 8  # 6 decoder layers x (self_attn, encoder_attn_text) x 4
