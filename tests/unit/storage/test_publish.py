"""Storing a run folder from its plan: resumable, manifest last, and a report that says what happened."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest

from mlcore.reporting import Bullets, Document, Section, document_to_json
from mlcore.storage import (MANIFEST_NAME, Lineage, LocalStore, PlannedFile, S3Store, StorageError, StorePlan,
                            read_plan, store_command, store_run_folder, verify_manifest, write_plan)
from mlcore.storage.s3 import RetryPolicy
from tests.unit.storage.conftest import FlakyProxy

RUN_ID = "20260101-000000-abcdef"
FILES = 8


def _plan(run_dir: Path, store: str) -> StorePlan:
    """A run folder of FILES outputs and the plan the pipeline would write for it."""
    entries = []
    for index in range(FILES):
        path = run_dir / "outputs" / f"part{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(500 + index))
        entries.append(PlannedFile(key=f"outputs/part{index}.bin", path=f"outputs/part{index}.bin",
                                   sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size))
    document = Document("Training pipeline report", [Section("Summary", [Bullets([f"run folder: `{run_dir}`"])])])
    return StorePlan(run_id=RUN_ID, store=store, files=entries, lineage=Lineage(dataset_sha256="a" * 64),
                     report=document_to_json(document), command=store_command(run_dir, store))


def test_an_interrupted_store_says_not_stored_and_finishes_later_without_resending(
        bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    run_dir, url = tmp_path / "run", f"s3://{bucket}/runs"
    plan = _plan(run_dir, url)
    write_plan(plan, run_dir)
    window = RetryPolicy.for_outages(0.5 / 60, base_delay_s=0.05, max_delay_s=0.1, botocore_attempts=1)
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=window)
    flaky_proxy.fail(100_000, after=7, status=None)  # a listing and three files (PUT + read-back), then down

    with pytest.raises(StorageError, match="failed .* times over"):
        store_run_folder(read_plan(run_dir), store, run_dir)

    report = (run_dir / "report.md").read_text()
    assert "**not stored** at" in report and f"`{plan.command}`" in report and "times over" in report
    assert "stored and verified" not in report
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"runs/{RUN_ID}/").get("Contents", [])
    assert len(listed) == 3 and MANIFEST_NAME not in {item["Key"].rsplit("/", 1)[-1] for item in listed}

    flaky_proxy.heal()
    before = len(flaky_proxy.requests)
    stored = store_run_folder(read_plan(run_dir), store, run_dir)

    assert (stored.sent, stored.skipped, stored.files) == (FILES - 3 + 2, 3, FILES + 2)  # + report.md, report.html
    resent = [line for line in flaky_proxy.requests[before:] if line.startswith("PUT ")
              and any(line.endswith(item["Key"]) for item in listed)]
    assert not resent
    manifest = verify_manifest(S3Store(bucket, "runs"), RUN_ID)  # every object's bytes hashed again
    assert {entry.key for entry in manifest.files} == {entry.key for entry in plan.files} | {"report.md",
                                                                                              "report.html"}
    local = (run_dir / "report.md").read_bytes()
    assert S3Store(bucket, "runs").read_bytes(f"{RUN_ID}/report.md") == local  # the same report, here and there
    assert f"**stored and verified** at `{url}/{RUN_ID}`" in local.decode() and "not stored" not in local.decode()


def test_a_run_folder_changed_since_its_plan_is_not_stored(tmp_path: Path) -> None:
    run_dir, store = tmp_path / "run", LocalStore(tmp_path / "runs")
    plan = _plan(run_dir, str(tmp_path / "runs"))
    (run_dir / "outputs" / "part3.bin").write_bytes(b"retrained")

    with pytest.raises(StorageError, match=r"changed after the run finished.*outputs/part3.bin: changed"):
        store_run_folder(plan, store, run_dir)
    assert not store.keys("")  # nothing sent
    assert "**not stored**" in (run_dir / "report.md").read_text()


def test_a_manifest_that_does_not_verify_is_removed(tmp_path: Path) -> None:
    class Lying(LocalStore):
        def compute_sha256(self, key):  # what a corrupted store would answer
            found = super().compute_sha256(key)
            return found if not key.endswith("part0.bin") else type(found)(found.key, "0" * 64, found.size)

    run_dir = tmp_path / "run"
    with pytest.raises(StorageError, match="do not match the manifest"):
        store_run_folder(_plan(run_dir, str(tmp_path / "runs")), Lying(tmp_path / "runs"), run_dir)
    assert not (tmp_path / "runs" / RUN_ID / MANIFEST_NAME).exists()
    assert "**not stored**" in (run_dir / "report.md").read_text()


def test_a_folder_without_a_plan(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no store-plan.json here") as caught:
        read_plan(tmp_path)
    assert "--output" in caught.value.fix
