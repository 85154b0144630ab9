"""Every cache keyed on a teacher records its base weights' revision and sha256: other weights (or another revision)
never reuse a stale entry, while the same weights moved to another folder still do. Also the train-teacher stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.distill.label_cache import LabelRequest, TeacherTargetCache
from mlcore.finetune.dino_cache import DinoFeatureCache
from mlcore.finetune.sam_cache import SamEmbeddingCache
from mlcore.finetune.setup import teacher_base_identities
from mlcore.teachers import GroundedSAM, build_prompt_chunks, load_grounding_dino, load_sam, weights
from mlcore.teachers.types import Teacher
from tasks.train_teacher import teacher_stage_key


@pytest.fixture(autouse=True)
def isolated_models_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLCORE_MODELS_DIR", raising=False)
    monkeypatch.setattr(weights, "DEFAULT_MODELS_DIR", tmp_path / "default_models")


def save_teacher(teacher: Teacher, folder: Path, *, shift: float = 0.0, revision: str | None = None) -> Path:
    """A Hugging Face folder of the teacher's model (weights shifted by `shift`), as the download script leaves it."""
    if shift:
        with torch.no_grad():
            next(teacher.model.parameters()).add_(shift)
    teacher.model.save_pretrained(folder)
    if teacher.tokenizer is not None:
        teacher.tokenizer.save_pretrained(folder)
    if revision is not None:
        (folder / "SOURCE.json").write_text(json.dumps({"repo": "x/y", "revision": revision}))
    return folder


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 190, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def sam_folders(tmp_path: Path) -> dict[str, Path]:
    """a, the same weights copied elsewhere, the same weights at another revision, and other weights."""
    a = save_teacher(load_sam("tiny"), tmp_path / "a" / "sam_vit_b", revision="1" * 40)
    moved = tmp_path / "moved" / "sam_vit_b"
    shutil.copytree(a, moved)
    revised = tmp_path / "revised" / "sam_vit_b"
    shutil.copytree(a, revised)
    (revised / "SOURCE.json").write_text(json.dumps({"repo": "x/y", "revision": "2" * 40}))
    other = save_teacher(load_sam("tiny"), tmp_path / "other" / "sam_vit_b", shift=0.5, revision="1" * 40)
    return {"a": a, "moved": moved, "revised": revised, "other": other}


def keys_by_folder(folders: dict[str, Path], key) -> dict[str, str]:
    return {name: key(folder) for name, folder in folders.items()}


def test_sam_embedding_and_teacher_label_keys_follow_the_base_weights(sam_folders, image: Path,
                                                                      tmp_path: Path) -> None:
    def embedding_key(folder: Path) -> str:
        return SamEmbeddingCache(tmp_path / "cache", load_sam("sam_vit_b", folder.parent)).key(image)

    def label_key(folder: Path) -> str:
        grounded = GroundedSAM(["cat"], sam=load_sam("sam_vit_b", folder.parent))
        request = LabelRequest(image, boxes=np.array([[10.0, 10.0, 90.0, 80.0]], dtype=np.float32))
        return TeacherTargetCache(tmp_path / "labels", grounded).key(request)

    for key in (embedding_key, label_key):
        keys = keys_by_folder(sam_folders, key)
        assert keys["a"] == keys["moved"]  # content, not the folder's path
        assert len({keys["a"], keys["revised"], keys["other"]}) == 3  # revision and sha256 both count


def test_dino_feature_cache_files_follow_the_base_weights(image: Path, tmp_path: Path) -> None:
    tiny = load_grounding_dino("tiny")
    folders = {"a": save_teacher(tiny, tmp_path / "a" / "grounding_dino_swint", revision="1" * 40),
               "other": save_teacher(load_grounding_dino("tiny"), tmp_path / "b" / "grounding_dino_swint",
                                     shift=0.5, revision="1" * 40)}
    folders["moved"] = tmp_path / "moved" / "grounding_dino_swint"
    shutil.copytree(folders["a"], folders["moved"])
    (chunk,) = build_prompt_chunks(tiny.tokenizer, ["cat"])

    def feature_file(folder: Path) -> str:
        teacher = load_grounding_dino("grounding_dino_swint", folder.parent)
        return DinoFeatureCache(tmp_path / "cache", teacher, teacher.preprocessor(), (160, 224)).path(image, chunk).name

    files = keys_by_folder(folders, feature_file)
    assert files["a"] == files["moved"] != files["other"]
    random_file = DinoFeatureCache(tmp_path / "cache", tiny, tiny.preprocessor(), (160, 224)).path(image, chunk).name
    assert random_file not in files.values()


def test_the_train_teacher_stage_key_changes_with_the_base_weights(sam_folders, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    context = SimpleNamespace(task=SimpleNamespace(name="train-teacher"))
    parameters = {"data": "train.json", "val": "val.json", "output": "out", "preset": "sam_vit_b"}
    keys = {}
    for name, folder in sam_folders.items():
        monkeypatch.setenv("MLCORE_MODELS_DIR", str(folder.parent))
        keys[name] = teacher_stage_key(context, parameters)
        assert teacher_base_identities(preset="sam_vit_b")["sam"] == load_sam("sam_vit_b").base_weights.cache_key
    assert keys["a"] == keys["moved"] and len({keys["a"], keys["revised"], keys["other"]}) == 3
    assert teacher_base_identities(preset="tiny") == {"grounding_dino": "random_init:tiny:0",
                                                      "sam": "random_init:tiny:0"}
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(sam_folders["a"].parent.parent / "empty"))
    assert teacher_base_identities(preset="sam_vit_b")["sam"] == "unavailable"
