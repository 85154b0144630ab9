"""Full-size presets load from local Hugging Face folders only; anything missing says how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer

from mlcore.errors import ModelError
from mlcore.teachers import load_grounding_dino, load_sam, weights
from tests.unit.teachers.conftest import dino_inputs, noise_image, sam_inputs

SCRIPT = "scripts/download_pretrained_models.sh"


def save_as(teacher, folder: Path, tokenizer=None) -> Path:
    """What download_pretrained_models.sh leaves: a Hugging Face folder (config, safetensors, tokenizer files)."""
    teacher.model.save_pretrained(folder)
    if tokenizer is not None or teacher.tokenizer is not None:
        (tokenizer or teacher.tokenizer).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("load", "preset"), [(load_grounding_dino, "grounding_dino_swint"),
                                              (load_grounding_dino, "grounding_dino_swinb"), (load_sam, "sam_vit_h")])
def test_missing_weights_name_the_download_script(load, preset: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="not found") as caught:  # the default folder: models/ (empty here)
        load(preset)
    assert f"{SCRIPT} {preset}" in str(caught.value) and str(weights.DEFAULT_MODELS_DIR) in str(caught.value)
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="not found") as caught:
        load(preset)
    assert f"{SCRIPT} {preset}" in str(caught.value) and str(tmp_path) in str(caught.value)
    monkeypatch.delenv("MLCORE_MODELS_DIR")
    monkeypatch.setattr(weights, "DEFAULT_MODELS_DIR", None)  # an installed copy outside a checkout
    with pytest.raises(ModelError, match="MLCORE_MODELS_DIR is set") as caught:
        load(preset)
    assert SCRIPT in str(caught.value)


def test_without_any_setting_the_loader_reads_the_default_models_folder(tiny_sam) -> None:
    save_as(tiny_sam, weights.DEFAULT_MODELS_DIR / "sam_vit_b")
    assert load_sam("sam_vit_b").weights == str(weights.DEFAULT_MODELS_DIR / "sam_vit_b")


def test_grounding_dino_loads_from_the_models_dir_through_the_real_loading_path(
        tiny_dino, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_as(tiny_dino, tmp_path / "grounding_dino_swint")
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(tmp_path))
    loaded = load_grounding_dino("grounding_dino_swint")
    assert loaded.weights == str(tmp_path / "grounding_dino_swint") and not loaded.random_init
    assert loaded.tokenizer("cat . dog .")["input_ids"] == tiny_dino.tokenizer("cat . dog .")["input_ids"]
    inputs = dino_inputs(tiny_dino, [noise_image(130, 170)])
    with torch.no_grad():
        expected, actual = tiny_dino.model(**inputs), loaded.model(**inputs)
    assert torch.allclose(expected.pred_boxes, actual.pred_boxes, rtol=0, atol=1e-6)
    # weights_dir may also name the model folder itself, and wins over the environment.
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert load_grounding_dino("grounding_dino_swint", tmp_path / "grounding_dino_swint").weights == loaded.weights


def test_sam_loads_from_the_models_dir_and_its_inputs_follow_the_loaded_config(
        tiny_sam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_as(tiny_sam, tmp_path / "sam_vit_b")
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(tmp_path))
    loaded = load_sam("sam_vit_b")
    assert loaded.preprocessor().config.pad_to == (256, 256)  # a tiny config in the folder: tiny inputs
    inputs = sam_inputs(tiny_sam, [noise_image(100, 300)])
    with torch.no_grad():
        expected = tiny_sam.model(**inputs, multimask_output=False).pred_masks
        actual = loaded.model(**inputs, multimask_output=False).pred_masks
    assert torch.allclose(expected, actual, rtol=0, atol=1e-6)


def test_a_folder_of_the_wrong_model_or_without_weights_is_a_model_error(tiny_sam, tiny_dino, tmp_path: Path) -> None:
    save_as(tiny_sam, tmp_path / "grounding_dino_swint")
    with pytest.raises(ModelError, match="holds a 'sam' model"):
        load_grounding_dino("grounding_dino_swint", tmp_path)
    folder = save_as(tiny_sam, tmp_path / "sam_vit_l")
    for file in folder.glob("*.safetensors"):
        file.unlink()
    with pytest.raises(ModelError, match="cannot load sam weights") as caught:
        load_sam("sam_vit_l", tmp_path)
    assert f"{SCRIPT} --verify-only sam_vit_l" in str(caught.value)


def test_a_tokenizer_that_moves_grounding_dinos_delimiters_is_refused(tiny_dino, tmp_path: Path) -> None:
    save_as(tiny_dino, tmp_path / "grounding_dino_swint", tokenizer=BertTokenizer())  # 5-token default vocab
    with pytest.raises(ModelError, match="1012"):
        load_grounding_dino("grounding_dino_swint", tmp_path)
