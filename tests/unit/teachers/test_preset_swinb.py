"""grounding_dino_swinb: IDEA-Research/grounding-dino-base's architecture (counted on the meta device), its LoRA.

Architecture numbers from transformers' `convert_grounding_dino_to_hf.py` ("base": window 12, embed 128, depths
2-2-18-2, heads 4-8-16-32, image 384, out_indices 2-3-4) and mmdetection's `grounding_dino_swin-b_*` configs.
"""

from __future__ import annotations

import pytest
import torch

from mlcore.config.schemas.teachers import GroundingDinoLora, TeacherGroundingDinoLoraConfig
from mlcore.teachers import apply_lora_to_grounding_dino, get_preset, load_grounding_dino, verify_lora_freezing


def count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_swin_b_preset_is_grounding_dino_base() -> None:
    preset = get_preset("grounding_dino", "grounding_dino_swinb")
    assert (preset.folder, preset.hub_repository) == ("grounding_dino_swinb", "IDEA-Research/grounding-dino-base")
    backbone = preset.build_config().backbone_config
    assert backbone.embed_dim == 128 and list(backbone.depths) == [2, 2, 18, 2]
    assert list(backbone.num_heads) == [4, 8, 16, 32] and backbone.window_size == 12 and backbone.image_size == 384
    assert list(backbone.out_indices) == [2, 3, 4] and backbone.patch_size == 4
    assert (preset.shortest_edge, preset.longest_edge) == (800, 1333)  # the same processor as Swin-T's
    assert TeacherGroundingDinoLoraConfig.model_validate({"model": {"preset": "grounding_dino_swinb"}})


def test_swin_b_architecture_size_and_its_decoder_lora_targets() -> None:
    with torch.device("meta"):
        teacher = load_grounding_dino("grounding_dino_swinb", random_init=True)
    assert count(teacher.model) / 1e6 == pytest.approx(232.3, abs=0.2)  # the model card rounds to 233 M
    teacher.model = apply_lora_to_grounding_dino(teacher.model, GroundingDinoLora())
    report = verify_lora_freezing(teacher.model)
    # The decoder is Swin-T's: the same 48 adapted layers and 0.39 M LoRA parameters (so an adapter of one fits the
    # other's shapes: only the recorded base identity tells them apart).
    assert len(report.trainable_modules) == 6 * 8 and report.trainable / 1e6 == pytest.approx(0.39, abs=0.01)
    assert report.ratio < 0.002
    assert not any("backbone" in name for name in report.trainable_modules)
