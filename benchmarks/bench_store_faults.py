"""The store step under network faults (issue 19): what survives, what is sent again, what the user is told.

A run folder of 44 outputs (29 MB: student weights, ONNX exports, adapters, JSON) plus report.md / report.html is
stored with mlcore's own store step (`store_run_folder`, what the pipeline's store task runs after planning) into a
real S3 endpoint on loopback (moto's server), through a TCP proxy that refuses connections, resets them or answers
503 for N seconds after K requests (tests/integration/fault_proxy.py). Retries use the product's policy: 1 s
doubling to 30 s with jitter, botocore's 5 tries per request, for the retry window after a request's first failure
(10 min by default). Then the check the CLI and the flow make before the first stage, against stores that cannot
work.

    .venv/bin/python benchmarks/bench_store_faults.py            # every case: about 9 minutes, mostly waiting
    .venv/bin/python benchmarks/bench_store_faults.py --quick    # outages up to 30 s only

Per case: objects re-sent = successful PUTs of an object whose earlier PUT had already succeeded (counted at the
proxy); requests failed = requests the proxy reset or answered 503/403 (refused connections never reach it).
Writes benchmarks/results/store_faults.json and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import PROJECT, code_version, machine_info  # noqa: E402

sys.path.insert(0, str(PROJECT))
RESULT = HERE / "results" / "store_faults.json"
BUCKET = "mlcore-bench-store"
AFTER = 20  # requests let through before the fault: a listing and about ten files (PUT + read-back HEAD)
MiB = 1024 * 1024
# (key, size): a detection+segmentation run as the pipeline keeps it (44 files; with the report and the manifest, the
# 47 objects of the run)
OUTPUTS = ([("student/best.pt", 6 * MiB), ("student/last.pt", 6 * MiB), ("export/model.onnx", 12 * MiB),
            ("export/model.int8.onnx", int(3.2 * MiB)),
            ("teachers/grounding_dino_lora/adapter_model.safetensors", 800_000),
            ("teachers/sam_lora/adapter_model.safetensors", 400_000), ("benchmark/report.png", 60_000)]
           + [(f"prepared/{name}", 40_000) for name in ("annotations.cleaned.json", "train.json", "val.json",
                                                        "test.json", "report.json", ".mode_config.json")]
           + [(f"teachers/{family}_lora/{name}", 900) for family in ("grounding_dino", "sam")
              for name in ("adapter_config.json", "mlcore_adapter.json", "README.md")]
           + [(f"evaluation/{model}/{name}", 3_000) for model in ("teachers", "best.pt", "model.onnx",
                                                                 "model.int8.onnx")
              for name in ("metrics.json", "predictions.json", "per_class.json", "confusion.json")]
           + [(f"export/{name}", 2_000) for name in ("export.json", "calibration.json", "gate.json")]
           + [(f"student/{name}", 2_000) for name in ("student.json", "metrics.json")]
           + [(f"benchmark/report.{ext}", 4_000) for ext in ("json", "csv", "md")]
           + [("teachers/metrics.json", 2_000)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_run_dir(root: Path) -> Path:
    rng = random.Random(19)
    for key, size in OUTPUTS:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def make_plan(run_dir: Path, store: str, run_id: str) -> Any:
    from mlcore.reporting import Bullets, Document, Section, document_to_json
    from mlcore.storage import Lineage, PlannedFile, StorePlan, store_command

    files = [PlannedFile(key=key, path=key, sha256=hashlib.sha256((run_dir / key).read_bytes()).hexdigest(),
                         size=(run_dir / key).stat().st_size) for key, _ in OUTPUTS]
    document = Document("Training pipeline report", [Section("Summary", [Bullets([f"run folder: `{run_dir}`"])])])
    return StorePlan(run_id=run_id, store=store, files=files, lineage=Lineage(dataset_sha256="a" * 64),
                     report=document_to_json(document), command=store_command(run_dir, store))


def report_says(run_dir: Path) -> str:
    text = (run_dir / "report.md").read_text()
    for marker in ("stored and verified", "not stored", "being stored"):
        if f"**{marker}**" in text or marker == "being stored" and marker in text:
            return marker
    return "?"


def store_case(proxy: Any, admin: Any, run_dir: Path, name: str, mode: str | None, seconds: float,
               window_s: float, finish_later: bool = False) -> dict[str, Any]:
    from mlcore.errors import MlcoreError
    from mlcore.storage import RetryPolicy, S3Store, store_run_folder, write_plan

    run_id = f"bench-{name}-{int(time.time())}"
    url = f"s3://{BUCKET}/runs"
    plan = make_plan(run_dir, url, run_id)
    write_plan(plan, run_dir)
    store = S3Store(BUCKET, "runs", retry=RetryPolicy.for_outages(window_s / 60))
    first_request = len(proxy.requests)
    if mode:
        proxy.schedule(mode, seconds=seconds, after=AFTER)
    started = time.monotonic()
    row: dict[str, Any] = {"fault": mode or "none", "duration_s": seconds, "after_requests": AFTER if mode else None,
                           "retry_window_s": window_s, "objects": len(plan.files) + 2}
    try:
        stored = store_run_folder(plan, store, run_dir)
        row.update(outcome="stored and verified", objects_sent=stored.sent, objects_skipped=stored.skipped,
                   message=f"stored: {stored.url} ({stored.files} files, manifest verified; {stored.sent} sent, "
                           f"{stored.skipped} already stored)")
    except MlcoreError as error:
        row.update(outcome="not stored", message=str(error).splitlines()[0], fix=error.fix)
    row["elapsed_s"] = round(time.monotonic() - started, 1)
    row["report_says"] = report_says(run_dir)
    listed = admin.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{run_id}/").get("Contents", [])
    row["objects_in_store"] = len(listed)
    row["manifest_in_store"] = any(item["Key"].endswith("/manifest.json") for item in listed)
    if finish_later:
        fault_started = proxy.fault_started()
        if fault_started is not None:  # `mlcore store` once the outage is over, as a user would run it
            time.sleep(max(0.0, fault_started + seconds - time.monotonic() + 1))
        row["later"] = finish_with_cli(run_dir, url, admin, run_id)
    row["objects_resent"] = len(proxy.resent_objects(since=first_request))
    row["requests_failed_at_proxy"] = sum(1 for request in proxy.requests[first_request:]
                                          if request.outcome in ("reset", "503", "403"))
    print(json.dumps(row, default=str), flush=True)
    return row


def finish_with_cli(run_dir: Path, url: str, admin: Any, run_id: str) -> dict[str, Any]:
    """`mlcore store RUN_DIR --store URL` as a user types it (its own process; the endpoint from the environment)."""
    command = [sys.executable, "-m", "mlcore.cli.app", "store", str(run_dir), "--store", url]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), cwd=PROJECT, timeout=900)
    listed = admin.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{run_id}/").get("Contents", [])
    return {"command": f"mlcore store {run_dir} --store {url}", "exit_code": result.returncode,
            "output": (result.stdout + result.stderr).strip(), "elapsed_s": round(time.monotonic() - started, 1),
            "report_says": report_says(run_dir),
            "manifest_in_store": any(item["Key"].endswith("/manifest.json") for item in listed)}


def preflight_case(name: str, location: str, **environment: str | None) -> dict[str, Any]:
    """The check `mlcore pipeline` / the flow make before the first stage."""
    from mlcore.storage import StorageError, check_store
    from mlcore.storage.location import unusable_store_message

    saved = {key: os.environ.get(key) for key in environment}
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    started = time.monotonic()
    try:
        check_store(location)
        outcome, message, fix = "passed", "", None
    except StorageError as error:
        outcome, message, fix = "refused before the first stage", unusable_store_message(location, error), error.fix
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    row = {"fault": name, "duration_s": None, "objects_resent": 0, "outcome": outcome,
           "elapsed_s": round(time.monotonic() - started, 1), "message": message.splitlines()[0] if message else "",
           "fix": fix}
    print(json.dumps(row, default=str), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| fault | duration | objects re-sent | outcome | time | message |", "|---|---|---|---|---|---|"]
    for row in rows:
        duration = "-" if row.get("duration_s") is None else f"{row['duration_s']:g} s"
        if row.get("retry_window_s") is not None:
            duration += f" (window {row['retry_window_s']:g} s)"
        outcome = row["outcome"]
        if row.get("later"):
            later = row["later"]
            outcome += (f"; report says '{row['report_says']}', no manifest; then `mlcore store`: exit "
                        f"{later['exit_code']}, report says '{later['report_says']}'")
        message = row["message"].replace("|", "\\|")
        if row.get("later"):
            message += " → " + row["later"]["output"].replace("|", "\\|")
        lines.append(f"| {row['fault']} | {duration} | {row.get('objects_resent', 0)} | {outcome} | "
                     f"{row['elapsed_s']} s | {message} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="outages up to 30 s only")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlcore-bench-store-"))
    os.environ.update(AWS_ACCESS_KEY_ID="AKIAMLCOREBENCHKEY00", AWS_SECRET_ACCESS_KEY="mlcore-bench-secret",
                      AWS_REGION="us-east-1", AWS_CONFIG_FILE=str(work / "no-aws-config"),
                      AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"), AWS_EC2_METADATA_DISABLED="true",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(work / "prefect"))
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        os.environ.pop(key, None)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.integration.fault_proxy import FaultProxy

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    admin = boto3.client("s3", endpoint_url=endpoint)
    admin.create_bucket(Bucket=BUCKET)
    proxy = FaultProxy(endpoint).start()
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    run_dir = make_run_dir(work / "run")
    default_window = 600.0
    cases: list[tuple[str, str | None, float, float, bool]] = [
        ("baseline", None, 0, default_window, False),
        ("reset-1.5", "reset", 1.5, default_window, False),
        ("503-5", "503", 5, default_window, False),
        ("refuse-8", "refuse", 8, default_window, False),
        ("refuse-30", "refuse", 30, default_window, False),
        ("503-30", "503", 30, default_window, False),
        ("reset-30", "reset", 30, default_window, False),
    ]
    if not args.quick:
        cases += [("refuse-150", "refuse", 150, default_window, False),
                  ("refuse-60-window-20", "refuse", 60, 20.0, True)]
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    rows = [store_case(proxy, admin, run_dir, name, mode, seconds, window, later)
            for name, mode, seconds, window, later in cases]

    closed = f"http://127.0.0.1:{_free_port()}"
    rows.append(preflight_case("missing bucket", "s3://mlcore-no-such-bucket/runs"))
    proxy.schedule("403", seconds=3600, after=0)
    rows.append(preflight_case("wrong credentials (403 InvalidAccessKeyId)", f"s3://{BUCKET}/runs"))
    proxy.heal()
    rows.append(preflight_case("missing credentials", f"s3://{BUCKET}/runs", AWS_ACCESS_KEY_ID=None,
                               AWS_SECRET_ACCESS_KEY=None))
    rows.append(preflight_case("unreachable endpoint", f"s3://{BUCKET}/runs", AWS_ENDPOINT_URL=closed))
    proxy.stop()
    server.stop()

    record = {"benchmark": "store_faults", "started": started, "machine": machine_info(["boto3", "botocore", "moto"]),
              "code": code_version(), "setup": {"objects": len(OUTPUTS) + 2,
                                                "bytes": sum(size for _, size in OUTPUTS),
                                                "fault_after_requests": AFTER,
                                                "retry_policy": "1 s doubling to 30 s, jitter 0.5-1x, botocore 5 "
                                                                "tries per request, window after first failure",
                                                "probe_window_s": 30},
              "cases": rows, "table_markdown": table(rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(record["table_markdown"])


if __name__ == "__main__":
    main()
