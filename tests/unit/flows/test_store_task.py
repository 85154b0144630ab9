"""The store step: a finished run's outputs worth keeping, in a folder or S3, with a verified manifest and lineage."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from mlcore.data.demo import make_demo_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.prepare import DatasetReport, prepare_dataset
from mlcore.reporting import ModelScores, PipelineRun, pipeline_markdown
from mlcore.storage import LocalStore, StorageError, open_store, read_manifest, read_plan, verify_manifest
from tasks.policy import retry_transient
from tasks.store import pending_status, store_run_task, store_target, stored_run_url
from tests.unit.storage.conftest import DUMMY_KEY_ID, DUMMY_SECRET

RUN_ID = "20260101-000000-abcdef"
KEPT = {
    "prepared/.mode_config.json", "prepared/report.json", "prepared/annotations.cleaned.json", "prepared/train.json",
    "prepared/val.json",
    "teachers/metrics.json", "teachers/grounding_dino_lora/adapter_model.safetensors",
    "teachers/grounding_dino_lora/adapter_config.json", "teachers/grounding_dino_lora/mlcore_adapter.json",
    "teachers/sam_lora/adapter_model.safetensors", "teachers/sam_lora/adapter_config.json",
    "teachers/sam_lora/mlcore_adapter.json", "student/best.pt", "student/last.pt", "student/student.json",
    "student/metrics.json", "export/model.onnx", "export/model.int8.onnx", "export/export.json",
    "evaluation/best.pt/metrics.json", "benchmark/report.json", "benchmark/report.png", "report.md", "report.html",
}
LEFT_OUT = ["teachers/checkpoints/sam/epoch_1.pt", "teachers/cache/sam_embeddings/a.pt", "student/checkpoints/e1.pt",
            "student/teacher_cache/a.pt", "student/tensorboard/events.out", "student/.pipeline-stage.json",
            "export/.pipeline-stage.json", "student.previous/best.pt", "dataset/images/0.png"]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A real validate output (cleaned + split COCO files, .mode_config.json, report.json), built once."""
    root = tmp_path_factory.mktemp("prepared")
    source = make_demo_dataset(root / "demo", mode="boxes", num_images=6, negatives=0, seed=3)
    prepare_dataset(source, output_dir=root / "prepared", split="train:0.5,val:0.5", progress=False)
    return root / "prepared"


@pytest.fixture
def run(prepared: Path, tmp_path: Path) -> PipelineRun:
    """A finished run folder laid out as the flow writes it, with the stages' records (duck-typed where real ones
    would need torch), plus the checkpoints, caches and markers a stored run leaves out."""
    root = tmp_path / "run"
    shutil.copytree(prepared, root / "prepared")
    report = _copied_report(root / "prepared")
    adapters = {}
    for family in ("grounding_dino", "sam"):
        folder = root / "teachers" / f"{family}_lora"
        weights = _write(folder / "adapter_model.safetensors", os.urandom(1500))
        _write(folder / "adapter_config.json", b"{}")
        metadata = {"family": family, "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
        _write(folder / "mlcore_adapter.json", json.dumps(metadata).encode())
        adapters[family] = folder
    _write(root / "teachers" / "metrics.json", b"{}")
    for name in ("best.pt", "last.pt"):
        _write(root / "student" / name, os.urandom(2000))
    for name in ("student/student.json", "student/metrics.json", "export/export.json",
                 "evaluation/best.pt/metrics.json", "benchmark/report.json", "report.md", "report.html"):
        _write(root / name, b"{}")
    for name in ("model.onnx", "model.int8.onnx"):
        _write(root / "export" / name, os.urandom(1000))
    _write(root / "benchmark" / "report.png", os.urandom(100))
    for name in LEFT_OUT:
        _write(root / name, b"left out")
    export_files = [{"name": name, "format": "onnx", "precision": precision, "size_mb": 0.001}
                    for name, precision in (("model.onnx", "fp32"), ("model.int8.onnx", "int8"))]
    return PipelineRun(
        run_dir=root, dataset=report, settings={}, splits={},
        # the fields the store step and the report read
        teachers=SimpleNamespace(adapters=adapters, metrics_path=root / "teachers" / "metrics.json", runs={},
                                 mode="detection_only", device="cpu"),
        student=SimpleNamespace(output_dir=root / "student", best_path=root / "student" / "best.pt",
                                student="yolov8n", best_metric="map50", best=0.5, best_epoch=1, epochs=[{}],
                                teacher_calls=3),
        export=SimpleNamespace(output_dir=root / "export", files=export_files, quantized=None, gate=None,
                               gate_skipped_reason=None, recommended=root / "export" / "model.onnx",
                               recommended_reason="float model", report_path=root / "export" / "export.json"),
        scores=[ModelScores("best.pt", "pytorch", str(root / "student" / "best.pt"), {}, 3,
                            output_dir=str(root / "evaluation" / "best.pt"))],
        benchmark_files={"json": root / "benchmark" / "report.json", "plot": root / "benchmark" / "report.png"})


def _copied_report(folder: Path) -> DatasetReport:
    report = DatasetReport.model_validate_json((folder / "report.json").read_bytes())
    # the copy's own paths, as validate would have written them there
    report.output_dir = str(folder)
    report.outputs = {name: str(folder / Path(path).name) for name, path in report.outputs.items()}
    return report


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The stored-run artifacts the task publishes (`.fn` runs outside a flow run, with no API to send them to);
    the report's new version is dropped."""
    published: list[dict] = []
    monkeypatch.setattr("tasks.store.create_markdown_artifact", lambda markdown, **options: published.append(
        {"markdown": markdown, **options}))
    monkeypatch.setattr("tasks.report.create_markdown_artifact", lambda *args, **options: None)
    return published


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_is_stored_in_a_folder_with_a_verified_manifest_and_its_lineage(run, links, tmp_path) -> None:
    store_dir = tmp_path / "runs"
    stored = store_run_task.fn(run, str(store_dir), RUN_ID)

    assert stored.url == str(store_dir / RUN_ID) and stored.files == len(KEPT)
    assert {path.relative_to(store_dir / RUN_ID).as_posix() for path in (store_dir / RUN_ID).rglob("*")
            if path.is_file()} == KEPT | {"manifest.json"}  # no checkpoints, caches, markers, images
    manifest = verify_manifest(LocalStore(store_dir), RUN_ID)
    assert {entry.key for entry in manifest.files} == KEPT and manifest.run_id == RUN_ID
    lineage, root = manifest.lineage, run.run_dir
    assert lineage.dataset_sha256 == ModeConfig.read(root / "prepared").dataset_sha256
    assert lineage.dataset_sha256 == _sha(root / "prepared" / Path(run.dataset.outputs["cleaned"]).name)
    assert lineage.teacher_adapters == {
        family: _sha(root / "teachers" / f"{family}_lora" / "adapter_model.safetensors")
        for family in ("grounding_dino", "sam")}
    assert lineage.student_sha256 == _sha(root / "student" / "best.pt")
    assert lineage.exports == {name: _sha(root / "export" / name) for name in ("model.onnx", "model.int8.onnx")}
    # where the run is, for a person on another machine: the worker's name and the path, not a file:// link
    assert [link["key"] for link in links] == ["stored-run", "stored-run-manifest"]
    host = socket.gethostname()
    assert f"**`{store_dir / RUN_ID}`** on `{host}`" in links[0]["markdown"]
    assert f"rsync -a {host}:{store_dir / RUN_ID} ." in links[0]["markdown"]
    assert f"**`{store_dir / RUN_ID / 'manifest.json'}`** on `{host}`" in links[1]["markdown"]
    assert "file://" not in json.dumps(links)
    # the report says what happened, and the stored report is the run folder's, byte for byte
    for name in ("report.md", "report.html"):
        assert (store_dir / RUN_ID / name).read_bytes() == (root / name).read_bytes()
    assert f"**stored and verified** at `{store_dir / RUN_ID}`" in (root / "report.md").read_text()
    assert stored.sent == len(KEPT) and stored.skipped == 0


def test_the_report_names_where_the_run_is_being_stored(run) -> None:
    target = store_target("runs")  # relative to the working folder, made absolute for links and the report
    assert target == str(Path("runs").resolve())
    status = pending_status(run.run_dir, target, RUN_ID)
    summary = PipelineRun(run_dir=run.run_dir, dataset=run.dataset, settings={}, splits={}, store=status)
    text = pipeline_markdown(summary)
    assert f"being stored at `{Path('runs').resolve() / RUN_ID}`" in text
    assert f"`mlcore store {run.run_dir} --store {target}`" in text  # how to finish it, should the store not end
    assert stored_run_url("s3://team/runs", RUN_ID) == f"s3://team/runs/{RUN_ID}"
    assert store_target(None) is None and store_target("none") is None and store_target("") is None
    with pytest.raises(StorageError, match="unsupported store"):
        store_target("gs://bucket/runs")


def test_a_run_is_stored_in_s3_without_credentials_or_endpoint_in_artifacts_or_logs(
        run, links, bucket, aws_env, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mlcore")  # what the run logs carry (botocore debug is off there)
    stored = store_run_task.fn(run, f"s3://{bucket}/team/runs", RUN_ID)

    assert stored.url == f"s3://{bucket}/team/runs/{RUN_ID}" and stored.files == len(KEPT)
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"team/runs/{RUN_ID}/")["Contents"]
    assert {item["Key"].removeprefix(f"team/runs/{RUN_ID}/") for item in listed} == KEPT | {"manifest.json"}
    store = open_store(f"s3://{bucket}/team/runs")
    assert verify_manifest(store, RUN_ID).lineage == stored.lineage  # every object's bytes hashed again
    assert read_manifest(store, RUN_ID).lineage.student_sha256 == _sha(run.run_dir / "student" / "best.pt")
    assert f"**`{stored.url}`**" in links[0]["markdown"] and f"**`{stored.url}/manifest.json`**" in links[1]["markdown"]
    assert f"aws s3 cp --recursive {stored.url} {RUN_ID}" in links[0]["markdown"]
    published = json.dumps(links) + store.read_bytes(f"{RUN_ID}/manifest.json").decode() + caplog.text + repr(stored)
    for secret in (DUMMY_KEY_ID, DUMMY_SECRET, aws_env, aws_env.removeprefix("http://")):
        assert secret not in published


def test_a_missing_bucket_fails_the_task_at_once_without_a_retry(run, links, aws_env) -> None:
    state = store_run_task.fn(run, "s3://mlcore-no-such-bucket/runs", RUN_ID)

    assert state.is_failed() and "mlcore-no-such-bucket' does not exist" in state.message
    assert not retry_transient(store_run_task, None, state) and not links
    assert aws_env not in state.message and DUMMY_SECRET not in state.message


def test_an_endpoint_that_stays_down_fails_the_task_once_with_the_command_that_finishes_it(
        run, links, monkeypatch, tmp_path) -> None:
    from botocore.exceptions import EndpointConnectionError

    from mlcore.storage.s3_errors import exhausted_error

    class DownStore(LocalStore):
        def put_file(self, local_path, key):  # what S3Store raises once its retry window is spent
            try:
                raise EndpointConnectionError(endpoint_url="http://10.1.2.3:9000")
            except EndpointConnectionError as exc:
                raise exhausted_error(exc, action="upload", where=f"s3://team/{key}", attempts=9,
                                      seconds=600) from None

    monkeypatch.setattr("tasks.store.open_store", lambda location, **options: DownStore(location))
    target = str(tmp_path / "runs")
    state = store_run_task.fn(run, target, RUN_ID)

    # returned, not raised: one message, no traceback, and no Prefect retry to upload everything again
    assert state.is_failed() and not retry_transient(store_run_task, None, state) and store_run_task.retries == 0
    assert "not stored: " in state.message and "upload failed 9 times over 10 min" in state.message
    assert f"mlcore store {run.run_dir} --store {target}" in state.message and "10.1.2.3" not in state.message
    report = (run.run_dir / "report.md").read_text()
    assert "**not stored** at" in report and "upload failed 9 times" in report and "stored and verified" not in report
    assert f"`mlcore store {run.run_dir} --store {target}`" in report
    assert read_plan(run.run_dir).run_id == RUN_ID and not links


def test_an_adapter_whose_weights_changed_is_not_stored_as_its_lineage(run, links, tmp_path) -> None:
    _write(run.run_dir / "teachers" / "sam_lora" / "adapter_model.safetensors", b"changed after training")
    state = store_run_task.fn(run, str(tmp_path / "runs"), RUN_ID)

    assert state.is_failed() and "do not match the sha256 in mlcore_adapter.json" in state.message
    assert not (tmp_path / "runs" / RUN_ID / "manifest.json").exists()  # no manifest: not a stored run


def test_prefect_runs_the_task_once_on_a_permanent_error(prefect_harness, run, aws_env, monkeypatch) -> None:
    from prefect import flow

    opened = []
    monkeypatch.setattr("tasks.store.open_store", lambda location, **options: opened.append(location) or open_store(
        location, **options))
    task = store_run_task.with_options(retry_delay_seconds=0)

    @flow
    def store_only() -> SimpleNamespace:
        state = task(run, "s3://mlcore-no-such-bucket/runs", RUN_ID, return_state=True)
        return SimpleNamespace(failed=state.is_failed(), message=state.message)

    result = store_only()
    assert result.failed and "does not exist" in result.message and len(opened) == 1
