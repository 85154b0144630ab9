"""New annotations start training: annotation-sensor -> mlcore.annotations.updated -> training-pipeline's trigger.

A real server, the project's work-pool templates and deployments, the sensor run by a real worker; the training run
the trigger creates is checked through the API, not executed (test_pipeline_flow.py runs the pipeline itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.annotation_sensor import ANNOTATIONS_UPDATED, variable_name_for
from tests.integration.test_deployments import PREFECT, PROJECT, prefect, prefect_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
TEMPLATES = PROJECT / "deployments"


def api(env: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One REST call, retried as Prefect's own client retries: on 429, 502 and 503 (the server answers 503 while its
    SQLite database is busy, which a loaded 2-core machine running a worker and flow runs beside it reaches)."""
    for attempt in range(6):
        response = httpx.request(method, env["PREFECT_API_URL"] + path, json=body, timeout=30)
        if response.status_code not in (429, 502, 503):
            break
        time.sleep(min(2 ** attempt, 10))
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def deployment_id(env: dict[str, str], name: str) -> str:
    return api(env, "GET", f"/deployments/name/{name}")["id"]


def flow_runs(env: dict[str, str], deployment: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return api(env, "POST", "/flow_runs/filter", body)


def events_named(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    page = api(env, "POST", "/events/filter", {"filter": {"event": {"name": [name]}}, "limit": 50})
    return page["events"]


def at_least(count: int, items: list[Any]) -> list[Any] | None:
    return items if len(items) >= count else None


def wait_for(what: str, check, timeout: float = 60, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return result


@contextlib.contextmanager
def worker(env: dict[str, str], pool: str, log: Path) -> Iterator[None]:
    """`prefect worker start` in the background, polling every second instead of every 10."""
    with log.open("w") as output:
        process = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool], cwd=PROJECT, stdout=output,
                                   stderr=subprocess.STDOUT, env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"})
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # Prefect's graceful shutdown can outlast a loaded machine's patience
                process.kill()
                process.wait(timeout=30)


def finished(env: dict[str, str], run_id: str) -> dict[str, Any] | None:
    run = api(env, "GET", f"/flow_runs/{run_id}")
    return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


def run_sensor(env: dict[str, str], sensor: str, source: Path) -> None:
    """One sensor run, as the schedule or the UI starts one, carried out by the worker; waits until it ends."""
    run_id = api(env, "POST", f"/deployments/{sensor}/create_flow_run", {"parameters": {"source": str(source)}})["id"]
    run = wait_for("the sensor run to finish", lambda: finished(env, run_id), timeout=120)
    assert run["state"]["type"] == "COMPLETED", run["state"]


def remembered_sha256(env: dict[str, str], source: Path) -> str | None:
    variable = api(env, "GET", f"/variables/name/{variable_name_for(str(source))}")
    return variable["value"]["sha256"] if variable else None


def test_changed_annotations_start_a_training_run_with_the_file(prefect_env, tmp_path):  # noqa: F811
    env = prefect_env
    for pool in ("mlcore-cpu", "mlcore-gpu"):
        prefect(env, "work-pool", "create", pool, "--type", "process",
                "--base-job-template", str(TEMPLATES / "process.json"))
    with worker(env, "mlcore-cpu", tmp_path / "worker.log"):  # no GPU worker: training runs stay Scheduled
        deployed = prefect(env, "deploy", "--all")
        assert "annotation-sensor/annotation-sensor" in deployed
        training = deployment_id(env, "training-pipeline/training-pipeline")
        sensor = deployment_id(env, "annotation-sensor/annotation-sensor")
        schedules = api(env, "GET", f"/deployments/{training}")["schedules"]
        assert [schedule["active"] for schedule in schedules] == [False]  # weekly retraining waits to be switched on

        annotations = tmp_path / "annotations.json"
        annotations.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
        first_sha = hashlib.sha256(annotations.read_bytes()).hexdigest()

        # First sight counts as a change: the event goes out and the trigger creates a training run on the file.
        run_sensor(env, sensor, annotations)
        assert remembered_sha256(env, annotations) == first_sha
        first = wait_for("the trigger's training run", lambda: flow_runs(env, training))
        assert first[0]["parameters"]["data"] == str(annotations)
        assert first[0]["parameters"]["output"] == "data/runs/latest"  # the deployment's own parameters stay

        # Unchanged: nothing emitted, nothing remembered anew.
        run_sensor(env, sensor, annotations)
        assert remembered_sha256(env, annotations) == first_sha

        # Changed: a second event and a second training run on the same file.
        annotations.write_text(annotations.read_text().replace("cat", "dog"))
        second_sha = hashlib.sha256(annotations.read_bytes()).hexdigest()
        run_sensor(env, sensor, annotations)
        assert remembered_sha256(env, annotations) == second_sha
        runs = wait_for("a second training run", lambda: at_least(2, flow_runs(env, training)))

    assert [run["parameters"]["data"] for run in runs] == [str(annotations)] * 2
    assert {run["state"]["type"] for run in runs} == {"SCHEDULED"}  # waiting for a GPU worker
    # Two events for three sensor runs, one per content: the unchanged run emitted none.
    events = wait_for("both events stored", lambda: at_least(2, events_named(env, ANNOTATIONS_UPDATED)))
    assert sorted(event["payload"]["sha256"] for event in events) == sorted([first_sha, second_sha])
    assert len(flow_runs(env, training)) == 2
