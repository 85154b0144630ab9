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

Retries: S3Store already retries each transient failure (connection, 5xx, throttling) with backoff. When it gives
up, the task raises :class:`StoreUnreachable` (a ConnectionError) so Prefect tries the whole upload again later (twice);
a permanent failure (missing bucket, no access, a bad location, a corrupt run folder) ends the task Failed at once.

Credentials for an s3:// store: the worker's environment and AWS chain, or the prefect-aws AwsCredentials block
named by `aws_credentials` (tasks/aws.py); neither is written to the logs, the artifacts or the manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import MlcoreError, ModelError
from mlcore.reporting import HTML_NAME, MARKDOWN_NAME, PipelineRun
from mlcore.storage import (
    MANIFEST_NAME,
    ArtifactStore,
    Lineage,
    LocalStore,
    StorageError,
    StoredFile,
    join_key,
    open_store,
    verify_manifest,
    write_manifest,
)
from mlcore.storage.location import is_s3_url
from tasks.aws import S3Unreachable, gave_up_on_transient_failures, s3_client_options
from tasks.policy import retry_transient

TIMEOUT_SECONDS = 2 * 3600
NO_STORE = frozenset({"", "none", "off", "false"})
SKIPPED_FOLDERS = frozenset({"checkpoints", "cache", "teacher_cache", "tensorboard", ".cache", "__pycache__"})
STUDENT_FILES = ("best.pt", "last.pt", "student.json", "metrics.json")
ADAPTER_METADATA = "mlcore_adapter.json"  # mlcore.teachers.adapters.METADATA_NAME (that module imports torch)


@dataclass
class StoredRun:
    """Where a run was stored, and what its manifest says came from where."""

    run_id: str
    url: str  # the run's folder in the store: a path or s3://bucket/prefix/<run-id>
    manifest_url: str
    files: int
    bytes: int
    lineage: Lineage


class StoreUnreachable(S3Unreachable):
    """The store kept failing with transient errors after its own retries: worth another try of the whole upload."""


def store_target(store: str | None) -> str | None:
    """STORE as the pipeline takes it: None for no copy; a local folder made absolute (so links and the report name
    the real place); ``s3://...`` unchanged. A location open_store cannot use raises StorageError now."""
    if store is None or store.strip().lower() in NO_STORE:
        return None
    opened = open_store(store)
    if isinstance(opened, LocalStore):
        return str(opened.root.expanduser().resolve())
    return store.rstrip("/")


def stored_run_url(target: str, run_id: str) -> str:
    """Where run RUN_ID will lie in the store TARGET (from store_target); nothing is contacted."""
    return f"{target.rstrip('/')}/{run_id}" if "://" in target else str(Path(target) / run_id)


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


def store_run(run: PipelineRun, store: ArtifactStore, run_id: str) -> StoredRun:
    """Upload RUN's files to STORE under RUN_ID (each upload verified), write manifest.json with the lineage last,
    and check every listed file against it."""
    check = getattr(store, "check", None)
    if check is not None:
        check()  # a missing bucket or bad credentials fail before anything is read or sent
    files = run_files(run)
    stored = {key: store.put_file(path, join_key(run_id, key)) for key, path in files.items()}
    lineage = run_lineage(run, stored)
    write_manifest(store, run_id, stored.values(), lineage)
    # quick: a folder hashes every byte again anyway; S3 compares the sha256 recorded with each object, whose bytes
    # the service already checked on upload (ChecksumSHA256), instead of downloading the whole run once more.
    manifest = verify_manifest(store, run_id, quick=True)
    return StoredRun(run_id=run_id, url=store.url_for(run_id), files=len(manifest.files),
                     manifest_url=store.url_for(join_key(run_id, MANIFEST_NAME)),
                     bytes=sum(entry.size for entry in manifest.files), lineage=lineage)


# Never cached: every flow run is stored as a run of its own (a rerun that reused every stage is one too).
@task(name="store-run", retries=2, retry_delay_seconds=60, retry_condition_fn=retry_transient, cache_policy=NONE,
      timeout_seconds=TIMEOUT_SECONDS)
def store_run_task(run: PipelineRun, store: str, run_id: str, aws_credentials: str | None = None
                   ) -> StoredRun | State:
    """Store RUN at STORE (a folder or s3://bucket/prefix) as RUN_ID, with a verified manifest.json; link artifacts
    to both. AWS_CREDENTIALS: the name of a prefect-aws AwsCredentials block for an s3:// STORE; empty: the worker's
    environment."""
    try:
        options = s3_client_options(aws_credentials) if is_s3_url(store) else {}
        stored = store_run(run, open_store(store, **options), run_id)
    except StorageError as error:
        if gave_up_on_transient_failures(error):
            raise StoreUnreachable(str(error)) from None
        return Failed(message=str(error))
    except MlcoreError as error:
        return Failed(message=str(error))
    create_link_artifact(_link(stored.url), link_text=stored.url, key="stored-run",
                         description=f"Run {run_id}: {stored.files} files, {stored.bytes / 1e6:.1f} MB, verified")
    create_link_artifact(_link(stored.manifest_url), link_text=stored.manifest_url, key="stored-run-manifest",
                         description="sha256 and size of every stored file, and the lineage dataset -> teacher "
                                     "adapters -> student -> exports")
    return stored


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


def _link(url: str) -> str:
    return url if "://" in url else Path(url).as_uri()


__all__ = ["StoreUnreachable", "StoredRun", "dataset_source", "run_files", "run_lineage", "store_run", "store_run_task",
           "store_target", "stored_run_url"]
