"""Orchestration overhead of the training pipeline on the demo run.

    python benchmarks/bench_orchestration.py                     # running server, then ephemeral: ~10-12 min on 2 cores
    python benchmarks/bench_orchestration.py --modes server      # only against a running `prefect server start`

Overhead = the flow's wall time minus the sum of its steps' own compute time, as a share of the wall time. Goal: < 10%.

Each mode runs the demo (`training_pipeline(**demo_parameters(output=<fresh tmp folder>, store=<tmp folder>))`, what
`mlcore demo` runs) once, in a fresh child process with its own temporary PREFECT_HOME:

- `server`: a real `prefect server start` (SQLite, loopback, free port, analytics off) is started and waited for
  (/api/health) first; the child gets PREFECT_API_URL. The server's start-up is recorded but is not part of the run.
- `ephemeral`: no PREFECT_API_URL: Prefect starts its temporary per-process server inside the flow call, as a plain
  `mlcore demo` does.

Measured in the child, around the one flow call (imports happen first and are not timed):
- `wall`: time.perf_counter() from the start of the flow call to its return;
- `steps`: each task's function, timed by a wrapper put on the tasks' `.fn` (the body only: what the step computes,
  including its own in-body artifact calls); the sum over all task calls is the steps' compute time;
- from the API after the run: the flow run's start/end and total_run_time, and every task run's start/end,
  total_run_time (time in Running, which also covers persisting its result), state and run count;
- the pipeline's own per-stage records (PipelineResult.stages: the flow-side time around each task call, so each one
  = the step's compute + that task call's orchestration).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import PROJECT, code_version, loads, machine_info  # noqa: E402

RESULT = HERE / "results" / "orchestration_cpu.json"
LOGS = HERE / ".cache" / "orchestration"
PREFECT = str(Path(sys.executable).with_name("prefect"))
GOAL = 0.10
# Every task the demo flow runs, as module:name (the Task objects are shared, so wrapping one times every caller).
TASKS = ("tasks.demo:make_demo_data_task", "tasks.validate:validate_dataset_task",
         "tasks.train_teacher:train_teacher_task", "tasks.train_student:train_student_task",
         "tasks.export:export_model_task", "tasks.evaluate:evaluate_teachers_task",
         "tasks.evaluate:evaluate_model_task", "tasks.benchmark:benchmark_models_task", "tasks.report:report_task",
         "tasks.store:store_run_task")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the child: one demo run -----------------------------------------------------------------------------------------

def child(out: Path, run_dir: Path, store: Path, quick: bool) -> None:
    sys.path.insert(0, str(PROJECT))
    imported = time.perf_counter()
    from flows.pipeline import demo_parameters, training_pipeline

    import_seconds = time.perf_counter() - imported
    calls: list[dict[str, Any]] = []

    def timed(task: Any) -> None:
        inner = task.fn

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started, wall = time.perf_counter(), time.time()
            status = "returned"
            try:
                value = inner(*args, **kwargs)
                if getattr(value, "is_failed", None) and value.is_failed():
                    status = "returned Failed"
                return value
            except BaseException as error:
                status = f"raised {type(error).__name__}"
                raise
            finally:
                calls.append({"task": task.name, "seconds": time.perf_counter() - started, "start": wall,
                              "status": status})

        task.fn = wrapper  # with_options (the cached stages) copies fn, so the copies are timed too

    for entry in TASKS:
        module, _, name = entry.partition(":")
        timed(getattr(importlib.import_module(module), name))

    parameters = demo_parameters(output=str(run_dir), store=str(store))
    if quick:  # a smoke run of this script, not a measurement
        parameters.update(student_epochs=1, demo_images=8, benchmark_runs=1)
    load_before = loads()
    started_wall = time.time()
    started = time.perf_counter()
    state = training_pipeline(**parameters, return_state=True)
    wall = time.perf_counter() - started
    ended_wall = time.time()
    load_after = loads()
    record: dict[str, Any] = {
        "parameters": parameters, "import_seconds": import_seconds, "flow_call_seconds": wall,
        "flow_call_start": started_wall, "flow_call_end": ended_wall, "load_average_before": load_before,
        "load_average_after": load_after, "state": state.name, "message": state.message, "task_calls": calls,
        "prefect_api_url": os.environ.get("PREFECT_API_URL"),
    }
    if state.is_completed():
        result = state.result()
        record["stages"] = [{"name": s.name, "status": s.status, "seconds": s.seconds} for s in result.stages]
    flow_run_id = state.state_details.flow_run_id
    record["flow_run_id"] = str(flow_run_id)
    api_started = time.perf_counter()
    record["api"] = read_api(flow_run_id, expected=len(calls))
    record["api_read_seconds"] = time.perf_counter() - api_started
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")


def read_api(flow_run_id: Any, expected: int) -> dict[str, Any]:
    """The flow run and its task runs as the server recorded them. Task run states reach the server as events, so
    wait (up to 60 s) until every task run is there and finished."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    def stamp(value: Any) -> float | None:
        return value.timestamp() if value is not None else None

    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                              limit=200)
            finished = [run for run in task_runs if run.end_time is not None]
            attempts = sum(max(run.run_count, 1) for run in finished)
            if (attempts >= expected and len(finished) == len(task_runs) and flow_run.end_time is not None) \
                    or time.monotonic() > deadline:
                break
            time.sleep(1)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return {
        "flow_run": {"name": flow_run.name, "state": flow_run.state_name, "start": stamp(flow_run.start_time),
                     "end": stamp(flow_run.end_time), "total_run_time": flow_run.total_run_time.total_seconds(),
                     "expected_start": stamp(flow_run.expected_start_time)},
        "task_runs": sorted(({"name": run.name, "task_key": run.task_key, "state": run.state_name,
                              "run_count": run.run_count, "start": stamp(run.start_time), "end": stamp(run.end_time),
                              "total_run_time": run.total_run_time.total_seconds()} for run in task_runs),
                            key=lambda run: run["start"] or 0.0),
        "all_task_runs_finished": len(finished) == len(task_runs),
        "artifacts": len(artifacts),
    }


# --- the parent: servers, children, figures --------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Load average every 15 s while a child runs (the machine is shared: a neighbour's load slows the steps)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[list[float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(15):
            self.samples.append(loads())


def start_server(env: dict[str, str], port: int, log: Path) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return server, time.perf_counter() - started
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.terminate()
                raise SystemExit(f"the Prefect server did not come up within 120 s (log: {log})") from None
            time.sleep(0.25)


def measure(mode: str, timeout: int, quick: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"mlcore-bench-orchestration-{mode}-"))
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(work / "prefect-home"), "PREFECT_LOCAL_STORAGE_PATH": str(work / "storage"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONUNBUFFERED": "1"})
    server, server_seconds = None, None
    record: dict[str, Any] = {"mode": mode}
    try:
        if mode == "server":
            port = free_port()
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            server, server_seconds = start_server(env, port, LOGS / "server.log")
            record["server_start_seconds"] = server_seconds
        out = work / "child.json"
        log = LOGS / f"{mode}.log"
        sampler = Sampler()
        sampler.start()
        record["load_average_at_start"] = loads()
        started = time.perf_counter()
        with log.open("w") as handle:
            try:
                command = [sys.executable, __file__, "--child", str(out), "--run-dir", str(work / "run"),
                           "--store", str(work / "store")] + (["--quick"] if quick else [])
                code = subprocess.run(command, env=env, cwd=PROJECT, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        record["process_seconds"] = time.perf_counter() - started
        sampler.stop.set()
        record["load_average_samples"] = sampler.samples
        record["load_average_at_end"] = loads()
        record["exit_code"] = code
        record["log"] = str(log.relative_to(PROJECT))
        if code != 0 or not out.is_file():
            record["error"] = log.read_text()[-3000:]
            return record
        record["child"] = json.loads(out.read_text())
        record["figures"] = figures(record["child"])
        return record
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


def figures(run: dict[str, Any]) -> dict[str, Any]:
    wall = run["flow_call_seconds"]
    steps = sum(call["seconds"] for call in run["task_calls"])
    api = run["api"]
    api_tasks = sum(task["total_run_time"] for task in api["task_runs"])
    flow = api["flow_run"]
    flow_api = (flow["end"] - flow["start"]) if flow["start"] and flow["end"] else None
    stage_sum = sum(stage["seconds"] for stage in run.get("stages", []))

    def share(total: float | None, part: float) -> dict[str, Any] | None:
        if total is None:
            return None
        return {"wall_seconds": total, "steps_seconds": part, "overhead_seconds": total - part,
                "overhead_share": (total - part) / total}

    per_stage = []
    stages = run.get("stages", [])
    if len(stages) == len(run["task_calls"]):  # one call per stage (no retries): they line up in order
        for stage, call, task in zip(stages, run["task_calls"], api["task_runs"] + [None] * len(stages)):
            per_stage.append({"stage": stage["name"], "status": stage["status"], "stage_seconds": stage["seconds"],
                              "step_seconds": call["seconds"], "task_call_overhead_seconds":
                                  stage["seconds"] - call["seconds"],
                              "api_task_run": task["name"] if task else None,
                              "api_total_run_time": task["total_run_time"] if task else None})
    return {
        "headline": share(wall, steps),
        "basis": "wall = the flow call in the child (perf_counter); steps = sum of the task functions' own time "
                 "(wrapper on each task's fn)",
        "against_api_flow_run": share(flow_api, steps),
        "against_api_task_run_times": share(wall, api_tasks),
        "split": {"outside_tasks_seconds": wall - stage_sum if stages else None,
                  "task_calls_seconds": stage_sum - steps if stages else None,
                  "what": "outside_tasks = flow call minus the stage records (flow start/end, server start-up for an "
                          "ephemeral run, progress artifacts, flow code); task_calls = stage records minus the "
                          "steps' own time (task run creation, state changes, cache keys, result persistence)"},
        "flow_run_api_seconds": flow_api, "flow_run_total_run_time": flow["total_run_time"],
        "flow_call_start_to_api_flow_start_seconds": (flow["start"] - run["flow_call_start"]) if flow["start"] else None,
        "api_flow_end_to_flow_return_seconds": (run["flow_call_end"] - flow["end"]) if flow["end"] else None,
        "task_calls": len(run["task_calls"]), "task_runs_in_api": len(api["task_runs"]),
        "artifacts": api["artifacts"], "per_stage": per_stage,
    }


def table(record: dict[str, Any]) -> str:
    lines = []
    for mode, run in record["runs"].items():
        figures_ = run.get("figures")
        if not figures_:
            lines.append(f"{mode}: failed (exit {run.get('exit_code')}), see {run.get('log')}")
            continue
        head = figures_["headline"]
        lines.append(f"{mode}: wall {head['wall_seconds']:.1f} s, steps {head['steps_seconds']:.1f} s, overhead "
                     f"{head['overhead_seconds']:.1f} s = {100 * head['overhead_share']:.1f}% "
                     f"(outside tasks {figures_['split']['outside_tasks_seconds']:.1f} s, task calls "
                     f"{figures_['split']['task_calls_seconds']:.1f} s)")
        for stage in figures_["per_stage"]:
            lines.append(f"  {stage['stage']:<28} {stage['status']:<6} stage {stage['stage_seconds']:7.2f} s  step "
                         f"{stage['step_seconds']:7.2f} s  call overhead {stage['task_call_overhead_seconds']:5.2f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="server,ephemeral", help="comma-separated: server, ephemeral")
    parser.add_argument("--timeout", type=int, default=1500, help="seconds per demo run")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default: {RESULT.relative_to(PROJECT)} ({(LOGS / 'quick.json').relative_to(PROJECT)} "
                             "with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 images, 1 student epoch, 1 benchmark run")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.run_dir, args.store, args.quick)
        return
    started = time.perf_counter()
    machine = machine_info(["prefect", "torch", "ultralytics", "onnxruntime"])
    record: dict[str, Any] = {"machine": machine, "code": code_version(),
                              "date": datetime.now().astimezone().isoformat(timespec="seconds"),
                              "goal": {"overhead_share_below": GOAL}, "runs": {}}
    for mode in [mode.strip() for mode in args.modes.split(",") if mode.strip()]:
        if mode not in ("server", "ephemeral"):
            raise SystemExit(f"unknown mode {mode!r}")
        record["runs"][mode] = measure(mode, args.timeout, args.quick)
    record["machine"]["load_average_at_end"] = loads()
    record["seconds"] = time.perf_counter() - started
    for mode, run in record["runs"].items():
        head = (run.get("figures") or {}).get("headline")
        if head:
            record["goal"][mode] = {"overhead_share": head["overhead_share"], "met": head["overhead_share"] < GOAL}
    first = next(iter(record["runs"].values()), {})
    record["settings"] = (first.get("child") or {}).get("parameters")
    record["quick"] = args.quick
    output = args.output or (LOGS / "quick.json" if args.quick else RESULT)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    print(table(record))


if __name__ == "__main__":
    main()
