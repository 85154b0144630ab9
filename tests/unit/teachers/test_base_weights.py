"""Base weights are identified (repository, revision, sha256) and recorded: an adapter refuses any other base, and
every cache key changes with them. Real tiny models saved in Hugging Face format, loaded through the real path."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import GroundingDinoForObjectDetection

from mlcore.errors import ModelError
from mlcore.teachers import (apply_lora_to_grounding_dino, apply_lora_to_sam, load_adapter, load_grounding_dino,
                             load_sam, save_adapter, weights)
from mlcore.teachers.adapter_metadata import METADATA_NAME
from mlcore.teachers.presets import _tiny_grounding_dino_config, tiny_tokenizer
from mlcore.teachers.types import Teacher
from tests.unit.teachers.test_lora import randomize_lora
from tests.unit.teachers.test_weights import save_as

REVISION_A = "a" * 40
REVISION_B = "b" * 40


def sha256(path: Path) -> str:
    """hashlib's, not mlcore's helper: the code under test hashes with that helper."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def downloaded(folder: Path, revision: str, repo: str = "IDEA-Research/grounding-dino-tiny") -> Path:
    """What the download script adds beside the Hugging Face files: where they came from."""
    (folder / weights.SOURCE_FILE).write_text(json.dumps({"repo": repo, "revision": revision}, indent=2))
    return folder


def swin_b_like_dino(folder: Path) -> Path:
    """A tiny Grounding DINO with a wider backbone and the same decoder: its LoRA fits the tiny one's exactly, as
    grounding-dino-base's fits grounding-dino-tiny's."""
    config = _tiny_grounding_dino_config()
    config.backbone_config.embed_dim = 48
    with weights.seeded(7):
        model = GroundingDinoForObjectDetection(config)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def trained_adapter(teacher: Teacher, folder: Path) -> Path:
    teacher.model = (apply_lora_to_grounding_dino(teacher.model) if teacher.family == "grounding_dino"
                     else apply_lora_to_sam(teacher.model))
    randomize_lora(teacher.model)
    save_adapter(teacher, folder, class_mapping=["cat", "dog"])
    return folder


@pytest.fixture
def two_bases(tiny_dino, tmp_path: Path) -> tuple[Path, Path]:
    """models_a/ and models_b/, each with a grounding_dino_swint/ folder: tiny Swin-T-like and Swin-B-like."""
    a = downloaded(save_as(tiny_dino, tmp_path / "models_a" / "grounding_dino_swint"), REVISION_A)
    b = downloaded(swin_b_like_dino(tmp_path / "models_b" / "grounding_dino_swint"), REVISION_B,
                   "IDEA-Research/grounding-dino-base")
    return a.parent, b.parent


def test_an_adapter_records_its_bases_repository_revision_and_sha256(two_bases, tmp_path: Path) -> None:
    models_a, _ = two_bases
    teacher = load_grounding_dino("grounding_dino_swint", models_a)
    folder = trained_adapter(teacher, tmp_path / "adapter")
    recorded = json.loads((folder / METADATA_NAME).read_text())["base_weights"]
    sha = sha256(models_a / "grounding_dino_swint" / "model.safetensors")
    assert recorded == {"preset": "grounding_dino_swint", "repo": "IDEA-Research/grounding-dino-tiny",
                        "revision": REVISION_A, "weights_sha256": sha, "random_seed": None}
    assert json.loads((folder / METADATA_NAME).read_text())["format_version"] == 2


def test_an_adapter_refuses_a_base_with_other_weights_and_says_how_to_get_its_own(two_bases, tmp_path: Path) -> None:
    models_a, models_b = two_bases
    folder = trained_adapter(load_grounding_dino("grounding_dino_swint", models_a), tmp_path / "adapter")
    sha_a = sha256(models_a / "grounding_dino_swint" / "model.safetensors")
    sha_b = sha256(models_b / "grounding_dino_swint" / "model.safetensors")
    with pytest.raises(ModelError) as caught:
        load_adapter(folder, weights_dir=models_b)
    text = str(caught.value)
    assert f"IDEA-Research/grounding-dino-tiny@{REVISION_A}" in text and sha_a in text  # trained on
    assert f"IDEA-Research/grounding-dino-base@{REVISION_B}" in text and sha_b in text  # loaded now
    assert (f"MLCORE_REVISION_GROUNDING_DINO_SWINT={REVISION_A} scripts/download_pretrained_models.sh "
            "grounding_dino_swint") in caught.value.fix
    assert caught.value.where == str(folder)
    # Its own base loads, from the weights_dir, the environment or the folder recorded at save time.
    assert load_adapter(folder, weights_dir=models_a).base_weights.weights_sha256 == sha_a
    assert load_adapter(folder).base_weights.weights_sha256 == sha_a


def test_same_weights_at_another_revision_or_in_another_folder_still_load(two_bases, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    models_a, _ = two_bases
    folder = trained_adapter(load_grounding_dino("grounding_dino_swint", models_a), tmp_path / "adapter")
    copy = tmp_path / "copy" / "grounding_dino_swint"
    shutil.copytree(models_a / "grounding_dino_swint", copy)
    downloaded(copy, REVISION_B)  # e.g. a commit that only edited the model card
    with caplog.at_level(logging.INFO, logger="mlcore"):
        loaded = load_adapter(folder, weights_dir=copy.parent)
    assert loaded.base_weights.revision == REVISION_B
    assert any("base weights identical" in record.getMessage() for record in caplog.records)


def test_random_weight_adapters_load_only_on_the_same_seeded_base(tiny_sam, tmp_path: Path) -> None:
    folder = trained_adapter(tiny_sam, tmp_path / "adapter")
    metadata = json.loads((folder / METADATA_NAME).read_text())
    assert metadata["base_weights"] == {"preset": "tiny", "repo": None, "revision": None, "weights_sha256": None,
                                        "random_seed": 0}
    load_adapter(folder)
    metadata["base_weights"]["random_seed"] = 1
    (folder / METADATA_NAME).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=r"seed 1\).*seed 0\)") as caught:
        load_adapter(folder)
    assert "random_init (seed 1)" in caught.value.fix


def test_an_adapter_saved_before_bases_were_recorded_loads_with_a_warning(tiny_sam, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    folder = trained_adapter(tiny_sam, tmp_path / "adapter")
    metadata = json.loads((folder / METADATA_NAME).read_text())
    del metadata["base_weights"]
    metadata["format_version"] = 1
    (folder / METADATA_NAME).write_text(json.dumps(metadata))
    with caplog.at_level(logging.WARNING, logger="mlcore"):
        load_adapter(folder)
    assert any("without its base weights' identity" in record.getMessage() for record in caplog.records)


def test_weights_are_hashed_once_and_again_only_when_the_file_changes(tiny_sam, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_as(tiny_sam, tmp_path / "models" / "sam_vit_b")
    hashed: list[Path] = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda path: hashed.append(path) or real(path))
    monkeypatch.setattr(weights, "_DIGESTS", {})
    first = load_sam("sam_vit_b", tmp_path / "models").base_weights
    assert hashed == [folder / "model.safetensors"] and first.revision is None and first.repo is None
    record = json.loads((folder / weights.HASHES_FILE).read_text())["files"]["model.safetensors"]
    assert record["sha256"] == first.weights_sha256 == sha256(folder / "model.safetensors")

    monkeypatch.setattr(weights, "_DIGESTS", {})  # a new process: the record is enough
    assert load_sam("sam_vit_b", tmp_path / "models").base_weights == first and len(hashed) == 1

    other = load_sam("tiny").model
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    other.save_pretrained(folder)  # new weights in the same place
    os.utime(folder / "model.safetensors", ns=(record["mtime_ns"] + 1, record["mtime_ns"] + 1))
    changed = load_sam("sam_vit_b", tmp_path / "models").base_weights
    assert len(hashed) == 2 and changed.weights_sha256 != first.weights_sha256


def test_a_read_only_weights_folder_still_loads(tiny_sam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_as(tiny_sam, tmp_path / "models" / "sam_vit_b")
    monkeypatch.setattr(weights, "_DIGESTS", {})

    def read_only(path, data):  # chmod does not stop root, so the refusal is simulated where the write happens
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(weights, "write_json_atomic", read_only)
    base = load_sam("sam_vit_b", tmp_path / "models").base_weights
    assert base.weights_sha256 == sha256(folder / "model.safetensors")
    assert not (folder / weights.HASHES_FILE).exists()


def test_sharded_weights_are_identified_by_all_their_shards(tiny_sam, tmp_path: Path) -> None:
    folder = tmp_path / "sam_vit_b"
    tiny_sam.model.save_pretrained(folder, max_shard_size="500KB")
    shards = weights.weight_files(folder)
    assert len(shards) > 1
    lines = "".join(f"{sha256(path)}  {path.name}\n" for path in shards)
    assert weights.weights_sha256(folder) == hashlib.sha256(lines.encode()).hexdigest()
