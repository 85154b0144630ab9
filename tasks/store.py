"""Storing a finished run as a Prefect task: its outputs worth keeping go to the artifact store (mlcore.storage, a
local folder or ``s3://bucket/prefix``) under ``<run-id>/...``, then ``manifest.json`` (each file's sha256 and size,
and the lineage dataset -> teacher adapters -> student -> exports), then every listed file is checked against it.

What is kept (keys mirror the run folder):
    prepared/**                           validate's outputs: the cleaned and split COCO files, .mode_config.json,
                                          report.json (and prepared/val, prepared/test when those were given)
    teachers/metrics.json, teachers/<family>_lora/**    the LoRA adapters of the best epoch
    student/best.pt, last.pt, student.json, metrics.json
    export/**, evaluation/**, benchmark/report.*, report.md, report.html
Left out: checkpoints, caches, tensorboard logs, ``*.previous`` folders, stage markers and temp files, and the demo
dataset's images. Those rebuild or resume a run; a stored run is what a person ships, audits and compares.

How (mlcore.storage.publish): the files with their sha256s, the lineage and the report's document go into
``<run folder>/store-plan.json`` first; then each file not already in the store with the same sha256 is uploaded, the
report re-rendered as "stored and verified" goes up, ``manifest.json`` is written last and checked. The run folder's
report.md / report.html end up saying what happened: stored and verified, or not stored (why, the fix, and the
``mlcore store RUN_DIR --store ...`` command that finishes the store later, sending only what did not arrive).

Retries: every request and every whole file is retried on transient failures (connection refused or reset, 5xx,
throttling), 1 s apart doubling to 30 s with jitter, for as long as RETRY_MINUTES after its first failure: a shorter
outage is ridden out in-process, and what already arrived is never sent again. When that gives up, or on a permanent
failure (missing bucket, no access, a run folder that changed), the task returns a Failed state with one message (the
cause, its fix, the command): no Prefect retry (the window is the retry) and no traceback.

Credentials for an s3:// store: the worker's environment and AWS chain, or the prefect-aws AwsCredentials block
named by `aws_credentials` (tasks/aws.py); neither is written to the logs, the artifacts or the manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import MlcoreError, ModelError
from mlcore.io import sha256_file
from mlcore.reporting import (HTML_NAME, MARKDOWN_NAME, PipelineRun, StoreStatus, document_to_json, pipeline_document,
                              write_pipeline_report)
from mlcore.storage import (ArtifactStore, Lineage, PlannedFile, RetryPolicy, StorageError, StoredFile, StoredRun,
                            StorePlan, check_run_id, check_store, join_key, open_store, store_command, store_run_folder,
                            store_target, write_plan)
from mlcore.storage.location import is_s3_url, unusable_store_message
from tasks.aws import s3_client_options
from tasks.report import publish_report
from tasks.store_links import stored_file_markdown, stored_run_markdown

TIMEOUT_SECONDS = 4 * 3600
DEFAULT_RETRY_MINUTES = 10.0
SKIPPED_FOLDERS = frozenset({"checkpoints", "cache", "teacher_cache", "tensorboard", ".cache", "__pycache__"})
STUDENT_FILES = ("best.pt", "last.pt", "student.json", "metrics.json")
REPORT_NAMES = frozenset({MARKDOWN_NAME, HTML_NAME})
ADAPTER_METADATA = "mlcore_adapter.json"  # mlcore.teachers.adapter_metadata.METADATA_NAME (mlcore.teachers imports torch)


def stored_run_url(target: str, run_id: str) -> str:
    """Where run RUN_ID will lie in the store TARGET (from store_target); nothing is contacted."""
    return f"{target.rstrip('/')}/{run_id}" if "://" in target else str(Path(target) / run_id)


def store_retry(minutes: float) -> RetryPolicy:
    """The store's retries: any number of tries while a request or file has been failing for under MINUTES."""
    return RetryPolicy.for_outages(minutes)


def check_run_store(target: str, aws_credentials: str | None = None) -> ArtifactStore:
    """The store TARGET, checked before the first stage: bucket there, credentials accepted, writing allowed (a
    small object written and removed). Raises the StorageError the store step would raise after training."""
    options = s3_client_options(aws_credentials) if is_s3_url(target) else {}
    return check_store(target, **options)


def run_files(run: PipelineRun) -> dict[str, Path]:
    """The run's files worth keeping, by key relative to the run folder (see the module docstring)."""
    root = Path(run.run_dir)
    found: dict[str, Path] = {}

    def add(path: Path) -> None:
        path = Path(path)
        if path.is_file():
            found[_relative_key(path, root)] = path

    def add_folder(folder: Path) -> None:
        for path in _kept_files(Path(folder)):
            add(path)

    add_folder(Path(run.dataset.output_dir))
    if run.teachers is not None:
        add(run.teachers.metrics_path)
        for adapter_dir in run.teachers.adapters.values():
            add_folder(adapter_dir)
    if run.student is not None:
        for name in STUDENT_FILES:
            add(Path(run.student.output_dir) / name)
    if run.export is not None:
        add_folder(run.export.output_dir)
    for score in run.scores:
        if score.output_dir:
            add_folder(Path(score.output_dir))
    for path in run.benchmark_files.values():
        if path is not None:
            add(Path(path))
    for name in (MARKDOWN_NAME, HTML_NAME):
        add(root / name)
    return dict(sorted(found.items()))


def run_lineage(run: PipelineRun, stored: dict[str, StoredFile]) -> Lineage:
    """dataset -> teacher adapters -> student -> exports, each by sha256; STORED maps run-relative keys to files."""
    root = Path(run.run_dir)
    mode_config = run.dataset.outputs.get("mode_config")
    if not mode_config or not Path(mode_config).is_file():
        raise StorageError(f"the run has no {MODE_CONFIG_NAME}, so its dataset cannot be named in the lineage",
                           where=run.dataset.output_dir, fix="run the pipeline again into this run folder")
    adapters = {}
    if run.teachers is not None:
        for family, adapter_dir in run.teachers.adapters.items():
            adapters[family] = _adapter_sha256(Path(adapter_dir), root, stored)
    student = None
    if run.student is not None:
        student = _stored_sha256(Path(run.student.best_path), root, stored)
    exports = {}
    if run.export is not None:
        for entry in run.export.files:
            exports[entry["name"]] = _stored_sha256(Path(run.export.output_dir) / entry["name"], root, stored)
    return Lineage(dataset_sha256=ModeConfig.read(Path(mode_config)).dataset_sha256,
                   dataset_source=dataset_source(run), teacher_adapters=adapters, student_sha256=student,
                   exports=exports)


def dataset_source(run: PipelineRun) -> str:
    """Where the dataset came from: the s3:// URL the flow was given (it trained on a local copy), else the file
    validate read."""
    given = run.settings.get("data")
    return given if is_s3_url(given) else run.dataset.dataset


def plan_store(run: PipelineRun, target: str, run_id: str, command: str = "") -> StorePlan:
    """What storing RUN at TARGET as RUN_ID means: its files (the report aside, which is re-rendered with the outcome)
    with their sha256s now, the lineage, and the report's document. Reads only local files."""
    root = Path(run.run_dir)
    files = {key: path for key, path in run_files(run).items() if key not in REPORT_NAMES}
    hashed = {key: StoredFile(key, sha256_file(path), path.stat().st_size) for key, path in files.items()}
    return StorePlan(run_id=check_run_id(run_id), store=target, lineage=run_lineage(run, hashed),
                     files=[PlannedFile(key=key, path=_local_path(files[key], root), sha256=entry.sha256,
                                        size=entry.size) for key, entry in hashed.items()],
                     report=document_to_json(pipeline_document(run)), command=command)


def pending_status(run_dir: str | Path, target: str, run_id: str, aws_credentials: str | None = None) -> StoreStatus:
    """What the report says before the store step: where the run is being stored, and the command that finishes it
    should the process die first."""
    return StoreStatus("pending", stored_run_url(target, run_id),
                       command=store_command(run_dir, target, aws_credentials))


# Never cached: every flow run is stored as a run of its own (a rerun that reused every stage is one too). No Prefect
# retries: the store rides out outages itself for RETRY_MINUTES, and a failure is returned, not raised.
@task(name="store-run", retries=0, cache_policy=NONE, timeout_seconds=TIMEOUT_SECONDS)
def store_run_task(run: PipelineRun, store: str, run_id: str, aws_credentials: str | None = None,
                   retry_minutes: float = DEFAULT_RETRY_MINUTES) -> StoredRun | State:
    """Store RUN at STORE (a folder or s3://bucket/prefix) as RUN_ID, with a verified manifest.json; artifacts say
    where both are and how to get them from another machine (tasks/store_links.py). AWS_CREDENTIALS: the name of a
    prefect-aws AwsCredentials block for an s3:// STORE; empty: the worker's environment. RETRY_MINUTES: how long a
    failing request or file is retried (the longest outage ridden out)."""
    url, command = stored_run_url(store, run_id), store_command(run.run_dir, store, aws_credentials)
    planned = False
    try:
        plan = plan_store(run, store, run_id, command)
        write_plan(plan, run.run_dir)
        planned = True
        options = s3_client_options(aws_credentials) if is_s3_url(store) else {}
        stored = store_run_folder(plan, open_store(store, retry=store_retry(retry_minutes), **options), run.run_dir)
    except MlcoreError as error:
        # store_run_folder has rewritten the report already when it ran; this covers the steps around it too
        write_pipeline_report(replace(run, store=StoreStatus("not stored", url, detail=_why(error), fix=error.fix,
                                                            command=command if planned else None)))
        _publish_report(run, "not stored")
        return Failed(message=not_stored_message(error, run.run_dir, command if planned else None))
    _publish_report(run, "stored and verified")
    create_markdown_artifact(stored_run_markdown(stored.url), key="stored-run",
                             description=f"Run {run_id}: {stored.files} files, {stored.bytes / 1e6:.1f} MB, verified "
                                         f"({stored.sent} sent, {stored.skipped} already stored)")
    create_markdown_artifact(stored_file_markdown(stored.manifest_url), key="stored-run-manifest",
                             description="sha256 and size of every stored file, and the lineage dataset -> teacher "
                                         "adapters -> student -> exports")
    return stored


def not_stored_message(error: MlcoreError, run_dir: str | Path, command: str | None) -> str:
    """The store step's failure, for the flow's Failed state and `mlcore pipeline` (exit 2): cause, fix, and the
    command that stores the run later."""
    text = f"not stored: {error}"
    if command:
        text += (f"\n  the run's outputs stay in {run_dir} (its report says 'not stored'); to store them later, "
                 f"sending only what did not arrive: {command}")
    return text


def _kept_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    kept = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(name for name in dirnames
                             if name not in SKIPPED_FOLDERS and not name.endswith(".previous"))
        kept += [Path(dirpath) / name for name in sorted(filenames)
                 if name == MODE_CONFIG_NAME or not (name.startswith(".") or name.endswith(".tmp"))]
    return kept


def _relative_key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # an output outside the run folder (not how the flow lays runs out): keep it by name
        return join_key("external", path.name)


def _stored_sha256(path: Path, root: Path, stored: dict[str, StoredFile]) -> str:
    found = stored.get(_relative_key(path, root))
    if found is None:
        raise StorageError("a model the stages reported is missing from the run folder", where=str(path),
                           fix="run the pipeline again into this run folder (finished stages are reused)")
    return found.sha256


def _adapter_sha256(adapter_dir: Path, root: Path, stored: dict[str, StoredFile]) -> str:
    """The adapter's recorded sha256, checked against the weights file just stored."""
    metadata_path = adapter_dir / ADAPTER_METADATA
    try:
        metadata = json.loads(metadata_path.read_text())
        recorded, weights = metadata["adapter_sha256"], metadata.get("adapter_file", "adapter_model.safetensors")
    except (OSError, ValueError, KeyError):
        raise ModelError(f"not a readable mlcore adapter: {ADAPTER_METADATA} is missing or incomplete",
                         where=str(metadata_path), fix="train the teachers again into this run folder") from None
    actual = stored.get(_relative_key(adapter_dir / weights, root))
    if actual is None or actual.sha256 != recorded:
        raise ModelError(f"the adapter weights do not match the sha256 in {ADAPTER_METADATA}",
                         where=str(adapter_dir / weights), fix="train the teachers again into this run folder")
    return recorded


def _local_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _why(error: MlcoreError) -> str:
    return f"{error.where}: {error.message}" if error.where else error.message


def _publish_report(run: PipelineRun, outcome: str) -> None:
    """A new version of the run report artifact, now that its "Stored copy" section says the outcome."""
    report = Path(run.run_dir) / MARKDOWN_NAME
    if report.is_file():
        publish_report(report.read_text(encoding="utf-8"), run.run_dir,
                       f"Training pipeline report ({outcome}); also {report}")


__all__ = ["DEFAULT_RETRY_MINUTES", "StoredRun", "check_run_store", "dataset_source", "not_stored_message",
           "pending_status", "plan_store", "run_files", "run_lineage", "store_retry", "store_run_task",
           "store_target", "stored_run_url", "unusable_store_message"]
