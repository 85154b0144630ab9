"""LocalStore: verified round trips in a folder, and writes that are all-or-nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlcore.storage import LocalStore, StorageError
from mlcore.storage import local as local_module


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_file_and_directory_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "runs")
    outputs = tmp_path / "outputs"
    _write(outputs / "student" / "best.pt", os.urandom(4000))
    _write(outputs / "report.md", b"# report\n")

    stored = store.put_dir(outputs, "run1")

    assert [item.key for item in stored] == ["run1/report.md", "run1/student/best.pt"]
    assert stored[1].sha256 == hashlib.sha256((outputs / "student" / "best.pt").read_bytes()).hexdigest()
    assert stored[1].size == 4000
    copy = tmp_path / "runs" / "run1" / "student" / "best.pt"
    assert copy.read_bytes() == (outputs / "student" / "best.pt").read_bytes()
    assert store.list() == store.list("run1") == ["run1/report.md", "run1/student/best.pt"]
    assert store.exists("run1/report.md") and not store.exists("run1/missing.md")
    assert store.stat("run1/student/best.pt") == stored[1]

    back = store.get_dir("run1", tmp_path / "back")
    assert sorted(path.relative_to(tmp_path / "back").as_posix() for path in back) == ["report.md", "student/best.pt"]
    assert (tmp_path / "back" / "report.md").read_bytes() == b"# report\n"


def test_a_failure_mid_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "runs")
    store.put_file(_write(tmp_path / "v1.pt", b"old model" * 100), "run1/model.pt")
    new = _write(tmp_path / "v2.pt", os.urandom(10_000))

    def dies_halfway(source, target):
        target.write(source.read(5000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module, "_copy_hashing", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        store.put_file(new, "run1/model.pt")
    with pytest.raises(OSError, match="No space left"):
        store.put_file(new, "run1/other.pt")

    # The old version is intact, the new key never appeared, and no temp file is left behind.
    assert (tmp_path / "runs" / "run1" / "model.pt").read_bytes() == b"old model" * 100
    assert sorted(path.name for path in (tmp_path / "runs" / "run1").iterdir()) == ["model.pt"]
    assert store.list("run1") == ["run1/model.pt"]


def test_a_copy_that_reads_back_differently_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "runs")
    real_hash = local_module._hash_handle
    monkeypatch.setattr(local_module, "_hash_handle", lambda handle: ("0" * 64, real_hash(handle)[1]))

    with pytest.raises(StorageError, match="does not match its source") as caught:
        store.put_file(_write(tmp_path / "a.pt", b"abc"), "run1/a.pt")

    assert caught.value.where == str(tmp_path / "runs" / "run1" / "a.pt")
    assert not (tmp_path / "runs" / "run1").exists() or not any((tmp_path / "runs" / "run1").iterdir())


def test_temp_files_of_writes_in_flight_are_not_listed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _write(tmp_path / "run1" / "a.pt", b"a")
    _write(tmp_path / "run1" / ".a.pt.k2j3h4.tmp", b"half")
    assert store.list("run1") == ["run1/a.pt"]


@pytest.mark.parametrize("key", ["", "../escape.pt", "/abs/key", "run1//a.pt", "run1/./a.pt", "run1\\a.pt"])
def test_keys_must_stay_inside_the_store(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "runs")
    with pytest.raises(StorageError, match="key"):
        store.put_file(_write(tmp_path / "a.pt", b"a"), key)


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "runs")
    with pytest.raises(StorageError, match="no such file to store"):
        store.put_file(tmp_path / "nope.pt", "run1/a.pt")
    with pytest.raises(StorageError, match="no artifact stored under this key"):
        store.get_file("run1/a.pt", tmp_path / "a.pt")
    with pytest.raises(StorageError, match="nothing is stored here"):
        store.get_dir("run1", tmp_path / "back")
    with pytest.raises(StorageError, match="not a directory"):
        store.put_dir(tmp_path / "nope", "run1")
