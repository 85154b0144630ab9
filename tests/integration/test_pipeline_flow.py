"""The whole training pipeline through Prefect: one tiny demo run shared by the checks, then a rerun from the CLI.

The first run goes through the flow on the session's test server (so its artifacts can be read back); the rerun is
`mlcore demo` as a user types it (an embedded server of its own), into the same run folder: every cached stage is
reused, because the cache lives in the run folder, not in a server's database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
# Smaller than the demo's defaults, so the run takes about two minutes on two cores.
# Two labelling and two evaluation shards: mapped tasks on the flow's own task runner (threads).
TINY = {"demo_images": 12, "teacher_epochs": 1, "student_epochs": 1, "imgsz": 128, "label_shards": 2, "eval_shards": 2}
CLI_TINY = ["--images", "12", "--teacher-epochs", "1", "--student-epochs", "1", "--imgsz", "128", "--shards", "2"]
CACHED_STAGES = {"train-teachers", "label", "distill", "export", "evaluate teachers", "evaluate best.pt",
                 "evaluate model.onnx", "evaluate model.int8.onnx", "benchmark"}


@pytest.fixture(scope="module")
def first_run(prefect_server, tmp_path_factory):
    from flows.pipeline import demo_parameters, training_pipeline

    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    store = run_dir.parent / "store"
    state = training_pipeline(**demo_parameters(output=str(run_dir), store=str(store), **TINY), return_state=True)
    assert state.is_completed(), state.message
    return run_dir, state


def test_the_demo_pipeline_runs_every_stage_and_writes_the_report(first_run) -> None:
    run_dir, state = first_run
    result = state.result()
    assert {record.name for record in result.stages} >= {"demo-data", "validate", "report", "store"} | CACHED_STAGES
    assert all(record.status == "ran" for record in result.stages)
    for name in ("teachers/metrics.json", "student/best.pt", "export/model.onnx", "export/model.int8.onnx",
                 "export/export.json", "evaluation/best.pt/metrics.json", "evaluation/teachers/metrics.json",
                 "benchmark/report.json", "benchmark/report.png"):
        assert (run_dir / name).is_file(), name
    markdown = (run_dir / "report.md").read_text()
    for expected in ("mode: **detection_and_segmentation**", "## Teachers", "yolov8n-seg", "accuracy gate:",
                     "model.int8.onnx", "p50 ms", "recommended model:", str(run_dir)):
        assert expected in markdown, expected
    assert "<table>" in (run_dir / "report.html").read_text()
    assert result.report["markdown"] == run_dir / "report.md"
    gate = json.loads((run_dir / "export" / "export.json").read_text())["accuracy_gate"]
    assert gate["evaluated"]
    assert f"accuracy gate: {gate['reason']}" in markdown


def test_the_run_is_stored_with_a_verified_manifest_and_its_lineage(first_run) -> None:
    from mlcore.storage import LocalStore, verify_manifest

    run_dir, state = first_run
    stored = state.result().stored
    store = LocalStore(run_dir.parent / "store")
    manifest = verify_manifest(store, stored.run_id)
    keys = {entry.key for entry in manifest.files}
    assert {"student/best.pt", "export/model.onnx", "prepared/.mode_config.json", "report.md"} <= keys
    assert not any("checkpoints/" in key or "cache/" in key for key in keys)
    assert set(manifest.lineage.teacher_adapters) and manifest.lineage.student_sha256
    assert set(manifest.lineage.exports) >= {"model.onnx"}
    report = (run_dir / "report.md").read_text()  # rewritten by the store step with its outcome
    assert f"**stored and verified** at `{stored.url}`" in report and "being stored" not in report
    assert (store.root / stored.run_id / "report.md").read_text() == report  # the stored report is the same file


def test_the_run_publishes_report_table_and_progress_artifacts(first_run) -> None:
    import anyio
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _, state = first_run

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))

    by_key = {artifact.key: artifact for artifact in anyio.run(artifacts) if artifact.key}
    assert {"training-pipeline-report", "model-comparison", "pipeline-stages", "model-scores",
            "training-pipeline-progress", "teacher-training", "student-distillation", "model-export", "stored-run",
            "stored-run-manifest"} <= set(by_key)
    assert "accuracy gate" in by_key["training-pipeline-report"].data
    assert by_key["training-pipeline-report"].type == "markdown" and by_key["model-comparison"].type == "table"
    assert float(by_key["training-pipeline-progress"].data) == 100.0


def test_mlcore_demo_rerun_into_the_same_folder_reuses_the_finished_stages(first_run, tmp_path) -> None:
    """`mlcore demo` as a user runs it (embedded Prefect, no server set), into the folder of the first run."""
    run_dir, _ = first_run
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    result = subprocess.run([sys.executable, "-m", "mlcore.cli.app", "demo", "--output", str(run_dir), *CLI_TINY],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for stage in CACHED_STAGES:
        assert f"{stage} (cached" in result.stdout, stage
    assert f"Report: {run_dir / 'report.md'}" in result.stdout
    stored = list((tmp_path / "data" / "runs").glob("*/manifest.json"))  # the default store, under the cwd
    assert len(stored) == 1 and f"stored: {stored[0].parent}" in result.stdout
    assert "| train-teachers | cached |" in (run_dir / "report.md").read_text()
