"""Adapters on disk: LoRA weights alone, loadable by PEFT and by mlcore, identical outputs, checksum enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from mlcore.errors import ModelError
from mlcore.teachers import (
    apply_lora_to_grounding_dino,
    apply_lora_to_sam,
    load_adapter,
    load_grounding_dino,
    load_sam,
    read_adapter_metadata,
    save_adapter,
    verify_lora_freezing,
)
from mlcore.teachers.adapter_metadata import ADAPTER_WEIGHTS, METADATA_NAME
from tests.unit.teachers.conftest import dino_inputs, noise_image, sam_inputs
from tests.unit.teachers.test_lora import randomize_lora

CLASSES = {"0": "cat", "1": "dog"}


@pytest.fixture
def dino_adapter(tiny_dino, tmp_path: Path):
    tiny_dino.model = apply_lora_to_grounding_dino(tiny_dino.model)
    randomize_lora(tiny_dino.model)
    tiny_dino.model.eval()
    report = verify_lora_freezing(tiny_dino.model)
    save_adapter(tiny_dino, tmp_path / "dino", class_mapping=CLASSES, class_prompts={"cat": ["cat", "kitten"]},
                 inference={"box_threshold": 0.3, "text_threshold": 0.2}, report=report)
    return tiny_dino, tmp_path / "dino"


@pytest.fixture
def sam_adapter(tiny_sam, tmp_path: Path):
    tiny_sam.model = apply_lora_to_sam(tiny_sam.model)
    randomize_lora(tiny_sam.model)
    tiny_sam.model.eval()
    save_adapter(tiny_sam, tmp_path / "sam", class_mapping=["cat", "dog"])
    return tiny_sam, tmp_path / "sam"


def test_only_the_adapter_is_saved_with_metadata_and_checksum(dino_adapter) -> None:
    _, folder = dino_adapter
    assert {ADAPTER_WEIGHTS, "adapter_config.json", METADATA_NAME} <= {path.name for path in folder.iterdir()}
    tensors = load_file(folder / ADAPTER_WEIGHTS)
    assert tensors and all("lora_" in key for key in tensors)  # no base weights
    metadata = json.loads((folder / METADATA_NAME).read_text())
    assert metadata["family"] == "grounding_dino" and metadata["preset"] == "tiny" and metadata["random_init"]
    assert metadata["class_mapping"] == CLASSES and metadata["class_prompts"] == {"cat": ["cat", "kitten"]}
    assert metadata["lora"]["r"] == 16 and metadata["lora_report"]["ratio"] < 0.02
    assert len(metadata["adapter_sha256"]) == 64
    assert read_adapter_metadata(folder).class_names == ["cat", "dog"]


def test_grounding_dino_adapter_round_trip_gives_identical_outputs(dino_adapter) -> None:
    teacher, folder = dino_adapter
    inputs = dino_inputs(teacher, [noise_image(140, 200)])
    with torch.no_grad():
        expected = teacher.model(**inputs)
        loaded = load_adapter(folder)
        assert isinstance(loaded.model, PeftModel) and loaded.adapter.preset == "tiny"
        actual = loaded.model(**inputs)
        # Plain PEFT loading works too, on a base built the same way.
        by_peft = PeftModel.from_pretrained(load_grounding_dino("tiny").model, folder).eval()(**inputs)
        merged = load_adapter(folder, merge=True)
        assert not isinstance(merged.model, PeftModel)
        from_merged = merged.model(**inputs)
    finite = torch.isfinite(expected.logits)
    assert torch.allclose(expected.pred_boxes, actual.pred_boxes, rtol=0, atol=1e-6)
    assert torch.allclose(expected.logits[finite], actual.logits[finite], rtol=0, atol=1e-6)
    assert torch.allclose(expected.pred_boxes, by_peft.pred_boxes, rtol=0, atol=1e-6)
    assert torch.allclose(expected.pred_boxes, from_merged.pred_boxes, atol=1e-4)


def test_sam_adapter_round_trip_gives_identical_outputs(sam_adapter) -> None:
    teacher, folder = sam_adapter
    inputs = sam_inputs(teacher, [noise_image(180, 240)])
    with torch.no_grad():
        expected = teacher.model(**inputs, multimask_output=False).pred_masks
        actual = load_adapter(folder).model(**inputs, multimask_output=False).pred_masks
    # Same weights; a fresh model object may pick other kernels (differences ~1e-10 seen).
    assert torch.allclose(expected, actual, rtol=0, atol=1e-6)
    assert read_adapter_metadata(folder).class_mapping == CLASSES  # a list of names is stored as index -> name


def test_a_changed_adapter_file_fails_its_checksum(sam_adapter) -> None:
    _, folder = sam_adapter
    weights = folder / ADAPTER_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_adapter(folder)


def test_folders_that_are_not_adapters_or_do_not_fit_the_base_are_model_errors(sam_adapter, tmp_path: Path) -> None:
    _, folder = sam_adapter
    with pytest.raises(ModelError, match=METADATA_NAME):
        load_adapter(tmp_path / "nothing")
    # A SAM adapter whose metadata claims Grounding DINO: the weights fit no module there.
    metadata = json.loads((folder / METADATA_NAME).read_text())
    metadata["family"] = "grounding_dino"
    (folder / METADATA_NAME).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="does not fit"):
        load_adapter(folder)


def test_a_teacher_without_lora_has_no_adapter_to_save(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no LoRA adapter"):
        save_adapter(load_sam("tiny"), tmp_path, class_mapping=["cat"])
