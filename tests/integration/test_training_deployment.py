"""training-pipeline as an operator runs it: deployed, run by a worker, killed mid-training, rerun, stored.

A real server, the project's work-pool template and `prefect deploy --all`, a real worker on mlcore-gpu. The first
run is SIGKILLed once distillation has written a complete epoch checkpoint; the rerun with the same parameters must
reuse the teachers (a cache hit), resume the student from its checkpoint, and finish with its report, artifacts and
a verified stored copy. Every output goes to the test's temp folder.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from mlcore.data.demo import make_demo_dataset
from tests.integration.test_annotation_sensor import TEMPLATES, api, deployment_id, finished, wait_for, worker
from tests.integration.test_deployments import PROJECT, prefect, prefect_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
TRAINING = "training-pipeline/training-pipeline"
# Small enough for a few minutes on two cores. A student epoch on the 8 training images at 128 px takes about a
# second on an idle machine (ten under load): ten epochs keep distillation running well after its first epoch
# checkpoint, so the kill lands mid-training.
STUDENT_EPOCHS = 10
PARAMETERS = {"teacher_preset": "tiny", "teacher_epochs": 1, "student_epochs": STUDENT_EPOCHS, "imgsz": 128,
              "device": "cpu", "benchmark_runs": 1}
RESUMED = re.compile(r"resumed from (epoch-\d+\.pt): epoch (\d+), batch (\d+), step (\d+)")
MARKER = "MLCORE_TRAINING_DEPLOYMENT_TEST"  # tags every process this test starts, to find and reap them
WAIT = 1200  # seconds; generous, a loaded two-core machine is slow, and no assertion is about time


@pytest.fixture
def reaper() -> Iterator[str]:
    """A marker for the test's processes; afterwards any process still carrying it (orphans included) is killed,
    and the test errors, since a worker or flow run outliving its test is a leak."""
    marker = uuid.uuid4().hex
    ours = psutil.Process()
    before = {child.pid for child in ours.children(recursive=True)}
    yield marker
    left = _marked(marker) + [child for child in ours.children(recursive=True) if child.pid not in before]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=30)
    assert not left, f"processes left running: {describe(left)}"


@pytest.fixture
def operator_env(reaper, prefect_env, tmp_path) -> dict[str, str]:  # noqa: F811 (a fixture)
    """The server's environment plus the marker, with the tools' caches and settings kept in the temp folder, and
    unbuffered output so the worker log is current when a failure shows its tail."""
    return {**prefect_env, MARKER: reaper, "PYTHONUNBUFFERED": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
            "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}


def describe(processes: list[psutil.Process]) -> list[str]:
    described = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            described.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
    return described


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARKER) == marker:
                found.append(process)
    return found


def flow_run_processes(run_id: str) -> list[psutil.Process]:
    """The process executing the flow run, then its own children: descendants of this test (worker -> runner's
    supervisor -> engine) that carry the run's id (PREFECT__FLOW_RUN_ID), the supervisor left out."""
    carrying = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if (process.environ().get("PREFECT__FLOW_RUN_ID") == run_id
                    and not any("_workspace_supervisor" in part for part in process.cmdline())):
                carrying.append(process)
    pids = {process.pid for process in carrying}
    engines = [process for process in carrying if process.ppid() not in pids]
    assert len(engines) == 1, f"processes running flow run {run_id}: {describe(carrying)}"
    return engines + engines[0].children(recursive=True)


def run_deployment(env: dict[str, str], parameters: dict[str, Any]) -> str:
    """`prefect deployment run ... --param k=v` as typed by an operator; returns the new flow run's id."""
    args = [arg for key, value in parameters.items() for arg in ("--param", f"{key}={json.dumps(value)}")]
    output = prefect(env, "deployment", "run", TRAINING, *args)
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output
    return match.group(1)


def complete_epoch_checkpoints(folder: Path) -> list[str]:
    """Epoch checkpoints CheckpointManager would resume from: the sidecar exists and records the .pt's size."""
    names = []
    for sidecar in sorted(folder.glob("epoch-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            meta = json.loads(sidecar.read_text())
            weights = sidecar.with_suffix(".pt")
            if weights.is_file() and weights.stat().st_size == meta["bytes"]:
                names.append(weights.name)
    return names


def epoch_of(checkpoint: str) -> int:
    return int(checkpoint.removeprefix("epoch-").removesuffix(".pt"))


def stage_code(folder: Path) -> str:
    """The code version a stage folder was written with (tasks.policy's marker)."""
    return json.loads((folder / ".pipeline-stage.json").read_text())["code"]


def flow_run_logs(env: dict[str, str], run_id: str) -> list[str]:
    messages, offset = [], 0
    while True:
        page = api(env, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}},
                                                "sort": "TIMESTAMP_ASC", "limit": 200, "offset": offset})
        messages += [entry["message"] for entry in page]
        if len(page) < 200:
            return messages
        offset += len(page)


def artifacts_by_key(env: dict[str, str], run_id: str) -> dict[str, dict[str, Any]]:
    found = api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {artifact["key"]: artifact for artifact in found if artifact["key"]}


def task_run_states(env: dict[str, str], run_id: str) -> dict[str, str]:
    """State names of the run's task runs by task name ("train-teacher-1a2" -> "train-teacher")."""
    found = api(env, "POST", "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [run_id]}}})
    return {run["name"].rsplit("-", 1)[0]: run["state"]["name"] for run in found}


def state_of(env: dict[str, str], run_id: str) -> dict[str, Any]:
    return api(env, "GET", f"/flow_runs/{run_id}")["state"]


def left_scheduled(env: dict[str, str], run_id: str) -> dict[str, Any] | None:
    state = state_of(env, run_id)
    return state if state["type"] != "SCHEDULED" else None


def concurrency_slots_in_use(env: dict[str, str], deployment: str) -> int:
    limit = api(env, "GET", f"/deployments/{deployment}")["global_concurrency_limit"]
    return limit["active_slots"]


@contextlib.contextmanager
def diagnosed(env: dict[str, str], log: Path, runs: list[str]) -> Iterator[None]:
    """On failure, add what an operator would look at: each flow run's state and message, the worker log's tail."""
    try:
        yield
    except (AssertionError, pytest.fail.Exception) as failure:
        states = []
        for run_id in runs:
            with contextlib.suppress(Exception):
                state = state_of(env, run_id)
                states.append(f"{run_id}: {state['type']} ({state['name']}): {state['message']}")
        tail = log.read_text(errors="replace")[-6000:] if log.is_file() else "(no worker log)"
        raise pytest.fail.Exception("flow runs:\n" + "\n".join(states) + f"\n\nworker log tail:\n{tail}") from failure


def wait_until(what: str, check, timeout: float = WAIT) -> Any:
    """Generous timeouts (no assertion here is about time), and a short poll so the kill lands mid-training."""
    return wait_for(what, check, timeout=timeout, poll=0.2)


def test_a_killed_training_run_resumes_on_rerun_and_stores_its_outputs(operator_env, tmp_path):
    env = operator_env
    for pool in ("mlcore-cpu", "mlcore-gpu"):
        prefect(env, "work-pool", "create", pool, "--type", "process",
                "--base-job-template", str(TEMPLATES / "process.json"))
    prefect(env, "deploy", "--all")
    training = deployment_id(env, TRAINING)
    project_default_output = PROJECT / "data" / "runs" / "latest"
    existed_before = project_default_output.exists()

    data = make_demo_dataset(tmp_path / "demo", num_images=12)
    run_dir, store = tmp_path / "run", tmp_path / "store"
    parameters = {"data": str(data), "output": str(run_dir), "store": str(store), **PARAMETERS}
    checkpoints = run_dir / "student" / "checkpoints"
    log = tmp_path / "worker.log"
    runs: list[str] = []

    with worker(env, "mlcore-gpu", log), diagnosed(env, log, runs):
        # 1. Start training, and kill the flow run's process once the student has a complete epoch checkpoint.
        runs.append(first := run_deployment(env, parameters))
        started = wait_until("the first run to start", lambda: left_scheduled(env, first))
        # It holds the deployment's one concurrency slot (prefect.yaml: concurrency_limit 1).
        assert concurrency_slots_in_use(env, training) == 1, started
        seen = wait_until("a complete epoch checkpoint of the student",
                          lambda: complete_epoch_checkpoints(checkpoints) or finished(env, first))
        assert isinstance(seen, list), f"the first run ended before its first student checkpoint: {seen['state']}"
        victims = flow_run_processes(first)
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=60)
        killed_at = complete_epoch_checkpoints(checkpoints)
        crashed = wait_until("the killed run to end", lambda: finished(env, first))
        assert crashed["state"]["type"] == "CRASHED", crashed["state"]
        assert "status code: -9" in crashed["state"]["message"]  # our SIGKILL, as the worker saw it
        # Training was cut short: student.json is written when it ends (best.pt / last.pt are, after every epoch).
        assert not (run_dir / "student" / "student.json").exists()
        assert max(epoch_of(name) for name in killed_at) < STUDENT_EPOCHS - 1, killed_at
        code = stage_code(run_dir / "teachers")
        # The crashed run gives its slot of the deployment's concurrency limit back, or the rerun would wait forever.
        wait_until("the crashed run's concurrency slot to be released",
                   lambda: concurrency_slots_in_use(env, training) == 0, timeout=120)

        # 2. The same command again: finished stages are reused, training resumes.
        runs.append(rerun := run_deployment(env, parameters))
        done = wait_until("the rerun to finish", lambda: finished(env, rerun))
        assert done["state"]["type"] == "COMPLETED", done["state"]
        if stage_code(run_dir / "teachers") != code:  # not the product's fault: nothing can be reused then
            pytest.fail(f"mlcore's code changed between the two runs ({code} -> {stage_code(run_dir / 'teachers')}): "
                        "cache keys include the code version; run the test on a tree nobody is editing")

        logs = flow_run_logs(env, rerun)
        resumed = [RESUMED.search(message) for message in logs]
        resumed = [match for match in resumed if match]
        assert resumed, "the rerun did not log 'resumed from ...' (mlcore logs reach the API?)"
        assert len(resumed) == 1, [m.group(0) for m in resumed]
        name, epoch = resumed[0].group(1), int(resumed[0].group(2))
        # The newest checkpoint the kill left, continuing at the epoch after it.
        assert name == killed_at[-1] and epoch == epoch_of(name) + 1, (resumed[0].group(0), killed_at)
        assert not any(message.startswith("student epoch 0:") for message in logs)  # epoch 0 was not trained again

        states = task_run_states(env, rerun)
        assert states["train-teacher"] == "Cached" and states["train-student"] == "Completed", states
        report = (run_dir / "report.md").read_text()
        assert "| train-teachers | cached |" in report
        assert "| distill | ran |" in report
        metrics = json.loads((run_dir / "student" / "metrics.json").read_text())
        assert [entry["epoch"] for entry in metrics["epochs"]] == list(range(STUDENT_EPOCHS))
        student = json.loads((run_dir / "student" / "student.json").read_text())
        assert student["metrics"]["last_epoch"]["epoch"] == STUDENT_EPOCHS - 1

        # 3. What the completed run published and stored.
        artifacts = artifacts_by_key(env, rerun)
        assert {"training-pipeline-report", "model-comparison", "training-pipeline-progress",
                "stored-run"} <= set(artifacts), sorted(artifacts)
        assert artifacts["training-pipeline-report"]["type"] == "markdown"
        assert "accuracy gate" in artifacts["training-pipeline-report"]["data"]
        assert artifacts["model-comparison"]["type"] == "table"
        assert float(artifacts["training-pipeline-progress"]["data"]) == 100.0
        stored = [path.parent for path in store.glob("*/manifest.json")]
        assert len(stored) == 1, stored  # the killed run never reached the store step
        assert str(stored[0]) in artifacts["stored-run"]["data"]
        assert "**stored and verified** at" in report and str(stored[0]) in report

    from mlcore.storage import LocalStore, verify_manifest

    manifest = verify_manifest(LocalStore(store), stored[0].name)
    keys = {entry.key for entry in manifest.files}
    assert {"student/best.pt", "student/metrics.json", "export/model.onnx", "report.md"} <= keys
    assert project_default_output.exists() == existed_before  # nothing written to the deployment's default output
