"""Stage policies: which failures are retried, what the cache key depends on, when training may resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.states import Failed

from mlcore.errors import ConfigError, DatasetError, ModelError
from tasks import policy
from tasks.policy import prepare_stage_dir, retry_transient, stage_key


@pytest.mark.parametrize("error", [OSError("connection reset"), ConnectionError("s3 endpoint"),
                                   RuntimeError("CUDA out of memory"), MemoryError()])
def test_transient_failures_are_retried(error: BaseException) -> None:
    assert retry_transient(None, None, Failed(data=error))


@pytest.mark.parametrize("error", [DatasetError("bad annotation", where="annotations[3]"), ConfigError("bad key"),
                                   ModelError("gate failed"), TimeoutError("stage ran out of time"),
                                   FileNotFoundError("gone"), TypeError("a bug"), ValueError("a bug")])
def test_user_errors_bugs_and_timeouts_are_not_retried(error: BaseException) -> None:
    assert not retry_transient(None, None, Failed(data=error))


def test_a_returned_failed_state_is_final() -> None:
    """The tasks return Failed(message=...) for user errors: no exception, no retry."""
    assert not retry_transient(None, None, Failed(message="annotations[3]: bad annotation"))


def _files(tmp_path: Path) -> tuple[Path, Path]:
    train, val = tmp_path / "train.json", tmp_path / "val.json"
    train.write_text('{"images": [1]}')
    val.write_text('{"images": [2]}')
    return train, val


def test_the_key_is_stable_for_the_same_inputs(tmp_path: Path) -> None:
    train, val = _files(tmp_path)
    parameters = {"data": str(train), "val": val, "epochs": 3}
    assert stage_key("train-teacher", parameters, ("data", "val")) == \
        stage_key("train-teacher", {**parameters, "val": str(val)}, ("data", "val"))


def test_the_key_changes_with_the_dataset_content(tmp_path: Path) -> None:
    train, val = _files(tmp_path)
    parameters = {"data": str(train), "val": str(val)}
    before = stage_key("train-teacher", parameters, ("data", "val"))
    train.write_text('{"images": [1, 3]}')
    assert stage_key("train-teacher", parameters, ("data", "val")) != before


def test_the_key_changes_with_the_settings_the_stage_and_upstream_records(tmp_path: Path) -> None:
    train, val = _files(tmp_path)
    base = {"data": str(train), "val": str(val), "epochs": 3, "teachers": {"best": 0.5}}
    key = stage_key("train-student", base, ("data", "val"))
    assert stage_key("train-student", {**base, "epochs": 4}, ("data", "val")) != key
    assert stage_key("train-student", {**base, "teachers": {"best": 0.6}}, ("data", "val")) != key
    assert stage_key("train-teacher", base, ("data", "val")) != key


def test_the_key_changes_with_the_code_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = _files(tmp_path)
    parameters = {"data": str(train), "val": str(val)}
    before = stage_key("export-model", parameters, ("data",))
    monkeypatch.setattr(policy, "code_version", lambda: "0.1.0+changed")
    assert stage_key("export-model", parameters, ("data",)) != before


def test_the_code_version_names_the_release_and_hashes_the_package() -> None:
    version = policy.code_version()
    release, _, digest = version.partition("+")
    assert release and len(digest) == 12


def test_a_stage_folder_resumes_only_under_the_same_key(tmp_path: Path) -> None:
    folder = tmp_path / "teachers"
    assert prepare_stage_dir(folder, "key-a") is False  # fresh
    (folder / "checkpoint.pt").write_text("a")
    assert prepare_stage_dir(folder, "key-a") is True  # an interrupted run of the same stage: resume

    assert prepare_stage_dir(folder, "key-b") is False  # other settings: start over, keep the old folder aside
    assert (tmp_path / "teachers.previous" / "checkpoint.pt").read_text() == "a"
    assert not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / policy.STAGE_MARKER).read_text())["key"] == "key-b"


def test_outside_a_task_run_nothing_is_moved(tmp_path: Path) -> None:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "last.pt").write_text("x")
    assert prepare_stage_dir(folder, None) is False
    assert (folder / "last.pt").exists()


def test_the_key_changes_when_an_image_is_replaced_under_the_same_name(tmp_path: Path) -> None:
    """The annotation file's hash cannot see a replaced image; validate's fingerprint in .mode_config.json does."""
    from mlcore.data.demo import make_demo_dataset
    from mlcore.data.prepare import prepare_dataset

    data = make_demo_dataset(tmp_path / "demo", num_images=8)
    report = prepare_dataset(data, output_dir=tmp_path / "prepared", split="train:0.5,val:0.5", progress=False)
    parameters = {"data": report.outputs["train"], "val": report.outputs["val"]}
    before = stage_key("train-teacher", parameters, ("data", "val"))
    assert stage_key("train-teacher", parameters, ("data", "val")) == before
    split_before = Path(report.outputs["train"]).read_bytes()

    image = tmp_path / "demo" / "images" / "shapes_0001.jpg"
    image.write_bytes(image.read_bytes() + b"\0")  # same name, other bytes
    prepare_dataset(data, output_dir=tmp_path / "prepared", split="train:0.5,val:0.5", progress=False)
    assert Path(report.outputs["train"]).read_bytes() == split_before  # the split file is byte-identical...
    assert stage_key("train-teacher", parameters, ("data", "val")) != before  # ...the key still changes
