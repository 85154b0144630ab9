"""manifest.json: sizes, checksums and lineage of a stored run, and the check that finds changed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlcore.io import sha256_file
from mlcore.storage import (
    Lineage,
    LocalStore,
    StorageError,
    check_run_id,
    new_run_id,
    read_manifest,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def stored_run(tmp_path: Path) -> tuple[LocalStore, str, dict[str, str]]:
    outputs = tmp_path / "outputs"
    sizes = {"adapters/gdino.safetensors": 800, "student/best.pt": 3000, "exports/student.onnx": 2000}
    for relative, size in sizes.items():
        (outputs / relative).parent.mkdir(parents=True, exist_ok=True)
        (outputs / relative).write_bytes(os.urandom(size))
    store, run_id = LocalStore(tmp_path / "runs"), new_run_id()
    stored = store.put_dir(outputs, run_id)
    shas = {item.key.removeprefix(f"{run_id}/"): item.sha256 for item in stored}
    lineage = {
        "dataset_sha256": sha256_file(outputs / "student" / "best.pt"),  # any real sha256 will do here
        "dataset_source": "data/demo/annotations.json",
        "teacher_adapters": {"grounding_dino": shas["adapters/gdino.safetensors"]},
        "student_sha256": shas["student/best.pt"],
        "exports": {"student.onnx": shas["exports/student.onnx"]},
    }
    write_manifest(store, run_id, stored, lineage)
    return store, run_id, shas


def test_manifest_lists_every_file_and_the_lineage(stored_run) -> None:
    store, run_id, shas = stored_run
    data = json.loads((store.root / run_id / "manifest.json").read_text())

    assert data["run_id"] == run_id and data["format"] == 1
    assert {entry["key"]: entry["sha256"] for entry in data["files"]} == shas
    assert data["lineage"]["teacher_adapters"] == {"grounding_dino": shas["adapters/gdino.safetensors"]}
    assert verify_manifest(store, run_id).lineage.student_sha256 == shas["student/best.pt"]


def test_verify_finds_changed_and_missing_files(stored_run) -> None:
    store, run_id, _ = stored_run
    (store.root / run_id / "student" / "best.pt").write_bytes(os.urandom(3000))
    (store.root / run_id / "exports" / "student.onnx").unlink()

    with pytest.raises(StorageError) as caught:
        verify_manifest(store, run_id)

    message = caught.value.message
    assert "2 of 3 stored files do not match" in message
    assert "student/best.pt: sha256" in message and "exports/student.onnx: missing" in message


def test_a_moved_run_still_verifies(stored_run, tmp_path: Path) -> None:
    store, run_id, _ = stored_run
    other = LocalStore(tmp_path / "elsewhere")
    other.put_dir(store.root / run_id, f"archive/{run_id}")
    verify_manifest(other, f"archive/{run_id}")


def test_manifest_of_everything_under_the_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "runs")
    (tmp_path / "a.txt").write_text("a")
    store.put_file(tmp_path / "a.txt", "run1/a.txt")
    manifest = write_manifest(store, "run1", None, Lineage(dataset_sha256="c" * 64))
    assert [entry.key for entry in manifest.files] == ["a.txt"]
    # Writing it again does not list the first manifest as a file of the run.
    assert [entry.key for entry in write_manifest(store, "run1", None, manifest.lineage).files] == ["a.txt"]


def test_a_run_without_manifest_is_incomplete(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no manifest.json"):
        read_manifest(LocalStore(tmp_path), "run1")


def test_bad_lineage_is_a_field_level_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"lineage\.teacher_adapters\.sam") as caught:
        lineage = {"dataset_sha256": "d" * 64, "teacher_adapters": {"sam": "xyz"}}
        write_manifest(LocalStore(tmp_path), "run1", [], lineage)
    assert "64 lowercase hex" in caught.value.fix
    with pytest.raises(StorageError, match="lineage.teacher"):
        write_manifest(LocalStore(tmp_path), "run1", [], {"dataset_sha256": "d" * 64, "teacher": {}})


def test_run_ids() -> None:
    run_id = new_run_id()
    assert check_run_id(run_id) == run_id and run_id != new_run_id()
    with pytest.raises(StorageError, match="invalid run id"):
        check_run_id("../x")
