"""The store step under network faults, against a real S3 endpoint on loopback (moto's server) behind a TCP proxy of
this test's own that refuses connections, resets them or answers 503, for N seconds after K requests.

- an outage of 30 s during the store is ridden out in-process, and no object that arrived is sent again;
- a longer one (60 s against a 20 s retry window) fails the step cleanly: a Failed state with one message (no
  traceback), a report that says "not stored" and why, no manifest; `mlcore store RUN_DIR` finishes it later,
  sending only what had not arrived, with a verified manifest;
- a store that cannot work (here: a missing bucket) fails the flow and the CLI before the first stage.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

from mlcore.storage import RetryPolicy, S3Store, StoredRun, verify_manifest
from tasks.store import store_run_task
from tests.integration.fault_proxy import FaultProxy
from tests.unit.flows.test_store_task import KEPT, RUN_ID, links, prepared, run  # noqa: F401 (fixtures)
from tests.unit.storage.conftest import aws_env, bucket, moto_endpoint  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
MISSING = "s3://mlcore-no-such-bucket/runs"


@pytest.fixture
def proxy(moto_endpoint: str, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:  # noqa: F811
    """The proxy, and the environment pointing every S3 client at it (as a user's AWS_ENDPOINT_URL would)."""
    faults = FaultProxy(moto_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faults.url)
    try:
        yield faults
    finally:
        faults.stop()


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's own policy with waits capped at 4 s instead of 30 s, so a test ends soon after its outage."""
    monkeypatch.setattr("tasks.store.store_retry", lambda minutes: RetryPolicy.for_outages(minutes, max_delay_s=4))


def _stored_keys(endpoint: str, bucket: str) -> set[str]:  # noqa: F811
    """What lies in the bucket, asked of the endpoint itself (not through the proxy)."""
    listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket, Prefix=f"runs/{RUN_ID}/")
    return {item["Key"].removeprefix(f"runs/{RUN_ID}/") for item in listed.get("Contents", [])}


def test_a_30_s_outage_is_ridden_out_without_sending_anything_twice(
        run, links, bucket, proxy, short_waits) -> None:  # noqa: F811
    proxy.schedule("refuse", seconds=30, after=12)  # a listing and a few files through, then the port is closed

    started = time.monotonic()
    stored = store_run_task.fn(run, f"s3://{bucket}/runs", RUN_ID, retry_minutes=2)
    elapsed = time.monotonic() - started

    assert isinstance(stored, StoredRun), getattr(stored, "message", stored)
    assert proxy.fault_started() is not None and elapsed >= 30 and proxy.outcomes().get("reset", 0) >= 1
    assert proxy.resent_objects() == [] and stored.sent == len(KEPT) and stored.skipped == 0
    assert {entry.key for entry in verify_manifest(S3Store(bucket, "runs"), RUN_ID).files} == KEPT
    assert "**stored and verified**" in (run.run_dir / "report.md").read_text()


def test_a_longer_outage_fails_cleanly_and_mlcore_store_finishes_it_later(
        run, links, bucket, proxy, short_waits, moto_endpoint) -> None:  # noqa: F811
    store = f"s3://{bucket}/runs"
    proxy.schedule("503", seconds=60, after=12)

    started = time.monotonic()
    state = store_run_task.fn(run, store, RUN_ID, retry_minutes=20 / 60)
    elapsed = time.monotonic() - started

    command = f"mlcore store {run.run_dir} --store {store}"
    # failed while the 60 s outage still lasted, after trying for the whole 20 s window
    assert state.is_failed() and elapsed >= 20, elapsed
    assert state.message.startswith("not stored: ") and "failed" in state.message and "times over" in state.message
    assert "HTTP 503" in state.message and command in state.message
    report = (run.run_dir / "report.md").read_text()
    assert "**not stored** at" in report and f"`{command}`" in report and "stored and verified" not in report
    arrived = _stored_keys(moto_endpoint, bucket)
    assert arrived and "manifest.json" not in arrived and len(arrived) < len(KEPT)

    proxy.heal()
    result = subprocess.run([sys.executable, "-m", "mlcore.cli.app", "store", str(run.run_dir), "--store", store],
                            capture_output=True, text=True, env=dict(os.environ), timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert f"{len(KEPT) - len(arrived)} sent, {len(arrived)} already stored" in result.stdout
    assert proxy.resent_objects() == []
    assert {entry.key for entry in verify_manifest(S3Store(bucket, "runs"), RUN_ID).files} == KEPT
    local = (run.run_dir / "report.md").read_bytes()
    assert S3Store(bucket, "runs").read_bytes(f"{RUN_ID}/report.md") == local
    assert "**stored and verified**" in local.decode() and "not stored" not in local.decode()


def test_a_failed_store_is_one_message_in_the_flow_without_a_traceback(
        prefect_server, run, bucket, proxy, short_waits, caplog) -> None:  # noqa: F811
    from prefect import flow
    from prefect.states import Failed

    from flows.pipeline import StageFailed, _Stages

    caplog.set_level(logging.INFO, logger="prefect")
    caplog.set_level(logging.INFO, logger="mlcore")
    proxy.schedule("reset", seconds=60, after=3)

    @flow(name="store-only")
    def store_only(target: str) -> object:  # the training pipeline's last stage, run as the flow runs it
        try:
            return _Stages().run("store", store_run_task, run, target, RUN_ID, retry_minutes=3 / 60)
        except StageFailed as failure:
            return Failed(message=str(failure))

    state = store_only(f"s3://{bucket}/runs", return_state=True)

    assert state.is_failed() and state.message.startswith("stage store failed: not stored: s3://")
    assert "ConnectionClosedError" in state.message and "mlcore store " in state.message
    assert "Traceback" not in caplog.text
    assert "**not stored**" in (run.run_dir / "report.md").read_text()


def test_the_flow_checks_the_store_before_its_first_stage(prefect_server, aws_env, tmp_path) -> None:  # noqa: F811
    from flows.pipeline import training_pipeline

    state = training_pipeline(store=MISSING, output=str(tmp_path / "run"), return_state=True)

    assert state.is_failed() and state.message.startswith(f"store {MISSING!r} cannot be used: ")
    assert "bucket 'mlcore-no-such-bucket' does not exist" in state.message and "create the bucket" in state.message
    assert not (tmp_path / "run" / "dataset").exists()  # the demo data stage never ran


def test_the_cli_checks_the_store_before_loading_the_pipeline(aws_env, tmp_path) -> None:  # noqa: F811
    command = [sys.executable, "-X", "importtime", "-m", "mlcore.cli.app", "pipeline", "--data",
               str(tmp_path / "any.json"), "--store", MISSING, "--output", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=300)

    assert result.returncode == 2, result.stderr[-3000:]
    assert f"pipeline failed: store {MISSING!r} cannot be used: " in result.stderr
    assert "bucket 'mlcore-no-such-bucket' does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    # no Prefect server, no training libraries: not even imported (-X importtime lists every module loaded)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "boto3" in imported  # the list is there: the store check itself needed boto3
    assert not {name for name in imported if name.split(".")[0] in ("prefect", "flows", "torch", "ultralytics")}
