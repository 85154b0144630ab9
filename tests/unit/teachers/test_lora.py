"""LoRA: exactly the targeted attention layers train, the 2 % check refuses broad patterns, merging is exact."""

from __future__ import annotations

import re

import pytest
import torch

from mlcore.config.schemas.teachers import (
    GROUNDING_DINO_LORA_TARGETS,
    SAM_LORA_TARGETS,
    GroundingDinoLora,
    SamFreeze,
    SamLora,
)
from mlcore.errors import ConfigError, ModelError
from mlcore.teachers import (
    apply_lora_to_grounding_dino,
    apply_lora_to_sam,
    load_sam,
    merge_lora_weights,
    verify_lora_freezing,
)
from mlcore.teachers.sam import decode_boxes, image_embeddings
from tests.unit.teachers.conftest import dino_inputs, noise_image, sam_inputs


def targeted(model: torch.nn.Module, pattern: str) -> set[str]:
    return {name for name, _ in model.named_modules() if re.fullmatch(pattern, name)}


def randomize_lora(model: torch.nn.Module, seed: int = 0) -> None:
    """LoRA starts with B = 0 (a no-op); give it weights so adapters change outputs and comparisons mean something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def test_grounding_dino_trains_only_decoder_attention_lora(tiny_dino) -> None:
    expected = targeted(tiny_dino.model, GROUNDING_DINO_LORA_TARGETS)
    assert len(expected) == 2 * 2 * 4  # 2 decoder layers x (self_attn, encoder_attn_text) x (q, k, v, out)
    model = apply_lora_to_grounding_dino(tiny_dino.model, GroundingDinoLora())
    report = verify_lora_freezing(model)
    assert set(report.trainable_modules) == expected
    assert all(re.fullmatch(GROUNDING_DINO_LORA_TARGETS, name) for name in report.trainable_modules)
    assert not any("backbone" in name or "text_backbone" in name for name in report.trainable_modules)
    assert 0 < report.ratio < 0.02 and report.trainable == 16 * (32 + 32) * 16  # r x (in + out) x 16 layers
    assert report.to_dict()["trainable_modules"] == report.trainable_modules

    model.train()
    inputs = dino_inputs(tiny_dino, [noise_image(120, 200)])
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.2, 0.3, 0.1, 0.2]])  # normalized cx, cy, w, h
    labels = [{"class_labels": torch.tensor([0, 1]), "boxes": boxes}]
    outputs = model(**inputs, labels=labels)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None and not parameter.requires_grad, name
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_the_peft_patch_gives_grounding_dino_its_text_embeddings(tiny_dino) -> None:
    inner = tiny_dino.model.model  # GroundingDinoModel, whose lookup transformers 5.x cannot resolve
    assert inner.get_input_embeddings() is inner.text_backbone.get_input_embeddings()
    assert tiny_dino.model.get_input_embeddings() is inner.text_backbone.embeddings.word_embeddings


def test_sam_trains_only_mask_decoder_attention_lora_on_cached_embeddings(tiny_sam) -> None:
    expected = targeted(tiny_sam.model, SAM_LORA_TARGETS)
    assert len(expected) == 28
    model = apply_lora_to_sam(tiny_sam.model, SamLora())
    report = verify_lora_freezing(model)
    assert set(report.trainable_modules) == expected
    assert not any(name.startswith(("vision_encoder", "prompt_encoder")) for name in report.trainable_modules)
    assert 0 < report.ratio < 0.02

    inputs = sam_inputs(tiny_sam, [noise_image(200, 300)])
    embeddings = image_embeddings(model, inputs["pixel_values"])  # the frozen encoder, computed once
    model.train()
    logits, ious = decode_boxes(model, embeddings, inputs["input_boxes"][0])
    assert logits.shape == (2, 64, 64) and ious.shape == (2,)
    target = torch.zeros_like(logits)
    target[:, 10:40, 10:40] = 1
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + (ious - 0.5).pow(2).mean()
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == ("lora_" in name), name


def test_unfreezing_the_prompt_encoder_trains_it_too_and_the_image_encoder_is_refused(tiny_sam) -> None:
    model = apply_lora_to_sam(tiny_sam.model, SamLora(), SamFreeze(prompt_encoder=False))
    report = verify_lora_freezing(model)
    assert any(name.startswith("prompt_encoder.") for name in report.trainable_modules)
    whole = apply_lora_to_sam(load_sam("tiny").model, SamLora(), SamFreeze(image_encoder=False))
    with pytest.raises(ModelError, match="max_trainable_fraction"):
        verify_lora_freezing(whole)


def test_a_pattern_that_also_hits_the_backbone_is_refused_before_training(tiny_dino) -> None:
    broad = GroundingDinoLora(r=64, alpha=128, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "query",
                                                                "key", "value"])
    model = apply_lora_to_grounding_dino(tiny_dino.model, broad)
    with pytest.raises(ModelError, match="max_trainable_fraction") as caught:
        verify_lora_freezing(model, broad.max_trainable_fraction)
    assert "backbone" in str(caught.value) or "encoder" in str(caught.value)


def test_a_pattern_that_matches_nothing_is_a_config_error(tiny_sam) -> None:
    with pytest.raises(ConfigError, match="matches no module"):
        apply_lora_to_sam(tiny_sam.model, SamLora(target_modules=r".*decoder\.nothing_here"))
    with pytest.raises(ModelError, match="no parameter is trainable"):
        verify_lora_freezing(tiny_sam.model.requires_grad_(False))


def test_merged_weights_give_the_unmerged_outputs(tiny_dino, tiny_sam) -> None:
    dino = apply_lora_to_grounding_dino(tiny_dino.model)
    randomize_lora(dino)
    dino.eval()
    inputs = dino_inputs(tiny_dino, [noise_image(150, 220)])
    with torch.no_grad():
        before = dino(**inputs)
        merged = merge_lora_weights(dino)
        after = merged(**inputs)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert torch.allclose(before.pred_boxes, after.pred_boxes, atol=1e-4)
    finite = torch.isfinite(before.logits)
    assert torch.allclose(before.logits[finite], after.logits[finite], atol=1e-4)

    sam = apply_lora_to_sam(tiny_sam.model)
    randomize_lora(sam, seed=1)
    sam.eval()
    inputs = sam_inputs(tiny_sam, [noise_image(200, 300)])
    with torch.no_grad():
        before = sam(**inputs, multimask_output=False).pred_masks
        after = merge_lora_weights(sam)(**inputs, multimask_output=False).pred_masks
    assert torch.allclose(before, after, atol=1e-4)
    assert merge_lora_weights(tiny_sam.model) is tiny_sam.model  # nothing to merge: unchanged
