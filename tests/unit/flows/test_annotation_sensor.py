"""annotation-sensor: the fingerprint of a local or S3 annotation file, and an event only when it changed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

import flows.annotation_sensor as sensor_module
from flows.annotation_sensor import ANNOTATIONS_UPDATED, annotation_sensor, source_key, variable_name_for
from mlcore.errors import DatasetError
from tasks.annotations import fingerprint_annotations


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_local_file_is_named_by_its_absolute_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "instances.json").write_bytes(b'{"images": []}')
    monkeypatch.chdir(tmp_path)
    seen = fingerprint_annotations("instances.json")
    assert (seen.source, seen.sha256, seen.size) == (str(tmp_path / "instances.json"), sha256(b'{"images": []}'), 14)


def test_a_missing_file_says_which_parameter_to_fix(tmp_path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as raised:
        fingerprint_annotations(str(tmp_path / "nothing.json"))
    assert "source" in raised.value.fix


def test_an_s3_object_uses_the_recorded_sha256_or_its_bytes(bucket, tmp_path) -> None:
    import boto3

    from mlcore.storage import open_store

    local = tmp_path / "train.json"
    local.write_bytes(b'{"annotations": [1]}')
    open_store(f"s3://{bucket}/coco").put_file(local, "train.json")  # records x-amz-meta-sha256
    boto3.client("s3").put_object(Bucket=bucket, Key="plain/val.json", Body=b'{"annotations": [2]}')  # records none

    recorded = fingerprint_annotations(f"s3://{bucket}/coco/train.json")
    hashed = fingerprint_annotations(f"s3://{bucket}/plain/val.json")
    assert (recorded.source, recorded.sha256) == (f"s3://{bucket}/coco/train.json", sha256(b'{"annotations": [1]}'))
    assert (hashed.sha256, hashed.size) == (sha256(b'{"annotations": [2]}'), 20)


def test_variable_names_are_valid_readable_and_distinct_per_location() -> None:
    name = variable_name_for("/data/Team A/instances_train.json")
    assert re.fullmatch(r"[a-z0-9_-]+", name) and len(name) <= 255
    assert name.startswith("mlcore-annotations-instances-train-json-")
    assert name == variable_name_for("/data/Team A/instances_train.json")
    assert name != variable_name_for("/data/Team B/instances_train.json")


def test_the_event_goes_out_on_first_sight_and_on_change_only(prefect_harness, tmp_path, monkeypatch) -> None:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(sensor_module, "emit_event", lambda event, **kwargs: emitted.append({"event": event, **kwargs}))
    annotations = tmp_path / "annotations.json"
    annotations.write_text('{"categories": [{"id": 1, "name": "cat"}]}')

    first, unchanged = annotation_sensor(str(annotations)), annotation_sensor(str(annotations))
    annotations.write_text('{"categories": [{"id": 1, "name": "dog"}]}')
    changed = annotation_sensor(str(annotations))

    assert (first.emitted, unchanged.emitted, changed.emitted) == (ANNOTATIONS_UPDATED, None, ANNOTATIONS_UPDATED)
    assert (first.previous_sha256, changed.previous_sha256) == (None, first.sha256)
    assert [e["payload"]["data"] for e in emitted] == [str(annotations)] * 2
    assert [e["payload"]["sha256"] for e in emitted] == [first.sha256, changed.sha256]
    assert emitted[0]["resource"]["prefect.resource.id"] == f"mlcore.annotations.{source_key(str(annotations))}"


def test_a_named_variable_and_event_are_used_as_given(prefect_harness, tmp_path, monkeypatch) -> None:
    from prefect.variables import Variable

    emitted: list[str] = []
    monkeypatch.setattr(sensor_module, "emit_event", lambda event, **kwargs: emitted.append(event))
    annotations = tmp_path / "a.json"
    annotations.write_text("{}")
    Variable.set("mlcore-test-adopted", sha256(b"{}"), overwrite=True)  # a file adopted by hand: no training

    result = annotation_sensor(str(annotations), event="team.labels.changed", variable="mlcore-test-adopted")
    assert (result.emitted, emitted) == (None, [])
    annotations.write_text('{"images": []}')
    assert annotation_sensor(str(annotations), event="team.labels.changed", variable="mlcore-test-adopted").changed
    assert emitted == ["team.labels.changed"]


def test_a_missing_source_fails_the_run_with_the_reason(prefect_harness, tmp_path: Path) -> None:
    state = annotation_sensor(str(tmp_path / "gone.json"), return_state=True)
    assert state.is_failed() and "does not exist" in state.message
