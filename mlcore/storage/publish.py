"""Storing a run folder: a plan written beside the run, a resumable upload, the report's outcome, manifest.json last.

    plan = StorePlan(run_id=..., store="s3://team/runs", files=[...], lineage=..., report=document_to_json(doc))
    write_plan(plan, run_dir)                       # run_dir/store-plan.json: what `mlcore store RUN_DIR` finishes
    stored = store_run_folder(plan, open_store(plan.store), run_dir)

The plan lists the run's files worth keeping with the sha256 each had when the run finished, the lineage, and the
run's report as a document. Storing it:

1. checks that every listed file still has its sha256 (a run folder changed since would store a wrong lineage);
2. uploads each file that is not already in the store with the same sha256 (``upload_files``: an interrupted store,
   run again, sends only what did not arrive);
3. renders the report with its "Stored copy" section saying "stored and verified" into a temporary folder and
   uploads it, so the stored report.md / report.html already say what they are part of;
4. writes ``manifest.json`` (every file, the report included, and the lineage), the mark of a complete run, and
   verifies every listed object against it; a manifest that does not verify is removed again;
5. only then writes that same report into the run folder.

When any step fails, the run folder's report is rewritten to say "not stored", why, and the command that finishes
the store later (`StorePlan.command`); nothing is claimed that did not happen. Locally and in the store the report
is the same file once the run is stored; before that, the store holds no manifest, so nothing there counts as the
run. A process killed midway leaves the report's "being stored" line, which names the same command.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mlcore.errors import MlcoreError
from mlcore.io import sha256_file, write_text_atomic
from mlcore.logs import get_logger
from mlcore.storage.base import ArtifactStore, StorageError, join_key
from mlcore.storage.manifest import MANIFEST_NAME, Lineage, check_run_id, verify_manifest, write_manifest
from mlcore.storage.upload import upload_files

log = get_logger(__name__)

PLAN_NAME = "store-plan.json"
PLAN_FORMAT = 1
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PlannedFile(BaseModel):
    """One file of the run to store: its key in the run's folder in the store, where it lies, what it held."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="path inside the run's folder in the store, '/'-separated")
    path: str = Field(description="the local file, relative to the run folder (absolute when outside it)")
    sha256: Sha256 = Field(description="the file's sha256 when the run finished")
    size: int = Field(ge=0, description="bytes")


class StorePlan(BaseModel):
    """``<run folder>/store-plan.json``: what storing this run means, written before the first byte is sent."""

    model_config = ConfigDict(extra="forbid")

    format: int = Field(default=PLAN_FORMAT, description="plan layout version")
    run_id: str = Field(description="the run's folder name in the store")
    store: str = Field(description="where the run was to be stored: a folder or s3://bucket/prefix")
    files: list[PlannedFile] = Field(description="the run's files worth keeping, the report aside")
    lineage: Lineage
    report: dict[str, Any] | None = Field(
        default=None, description="the run report's document (mlcore.reporting.document_to_json), re-rendered "
        "with the store's outcome into report.md and report.html")
    command: str = Field(default="", description="the command that stores this run folder later")


@dataclass
class StoredRun:
    """Where a run was stored, and what its manifest says came from where."""

    run_id: str
    url: str  # the run's folder in the store: a path or s3://bucket/prefix/<run-id>
    manifest_url: str
    files: int
    bytes: int
    lineage: Lineage
    sent: int = 0  # files uploaded by this store
    skipped: int = 0  # files already in the store with the same sha256 (an earlier, interrupted store sent them)


def store_command(run_dir: str | Path, store: str, aws_credentials: str | None = None) -> str:
    """``mlcore store RUN_DIR --store STORE [--aws-credentials BLOCK]``, quoted for a shell."""
    command = f"mlcore store {shlex.quote(str(run_dir))} --store {shlex.quote(store)}"
    return command + (f" --aws-credentials {shlex.quote(aws_credentials)}" if aws_credentials else "")


def write_plan(plan: StorePlan, run_dir: str | Path) -> Path:
    path = Path(run_dir) / PLAN_NAME
    write_text_atomic(path, plan.model_dump_json(indent=2) + "\n")
    return path


def read_plan(run_dir: str | Path) -> StorePlan:
    path = Path(run_dir) / PLAN_NAME
    if not path.is_file():
        raise StorageError(
            f"no {PLAN_NAME} here: the pipeline writes it when it stores a finished run",
            where=str(path.parent),
            fix="give the run folder of a pipeline run that reached its store step (its --output)",
        )
    try:
        plan = StorePlan.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise StorageError(f"{PLAN_NAME} is not valid: {location}: {first['msg']}", where=str(path),
                           fix="run the pipeline again into this folder (finished stages are reused)") from None
    check_run_id(plan.run_id)
    return plan


def store_run_folder(plan: StorePlan, store: ArtifactStore, run_dir: str | Path) -> StoredRun:
    """Store the run folder RUN_DIR as PLAN says, in STORE, finishing an earlier interrupted store (see the module
    docstring for the order, and why). The run's report says the outcome either way; failures raise."""
    from mlcore.reporting import StoreStatus, document_from_json, with_store_status, write_report_document

    run_dir = Path(run_dir).resolve()
    run_id, url = plan.run_id, store.url_for(plan.run_id)
    document = document_from_json(plan.report) if plan.report is not None else None
    try:
        files = _unchanged_files(plan, run_dir)
        upload = upload_files(store, {join_key(run_id, key): path for key, path in files.items()}, folder=run_id)
        stored_report = None
        with tempfile.TemporaryDirectory(prefix="mlcore-report-") as tmp:
            if document is not None:
                total = len(files) + 2  # and report.md, report.html
                stored_report = with_store_status(document, StoreStatus("stored", url, detail=_stored_detail(total)))
                rendered = write_report_document(stored_report, tmp)
                reports = upload_files(store, {join_key(run_id, path.name): path for path in rendered.values()},
                                       folder=run_id)
                upload.stored.update(reports.stored)
                upload.sent += reports.sent
                upload.skipped += reports.skipped
            write_manifest(store, run_id, upload.stored.values(), plan.lineage)
            manifest = _verified(store, run_id)
        if stored_report is not None:
            write_report_document(stored_report, run_dir)  # the same bytes as the stored copy
    except MlcoreError as error:
        if document is not None:
            write_report_document(with_store_status(document, StoreStatus(
                "not stored", url, detail=_why(error), fix=error.fix, command=plan.command or None)), run_dir)
        raise
    log.info("stored %s: %d files sent, %d already there", url, len(upload.sent), len(upload.skipped))
    return StoredRun(run_id=run_id, url=url, manifest_url=store.url_for(join_key(run_id, MANIFEST_NAME)),
                     files=len(manifest.files), bytes=sum(entry.size for entry in manifest.files),
                     lineage=plan.lineage, sent=len(upload.sent), skipped=len(upload.skipped))


def _unchanged_files(plan: StorePlan, run_dir: Path) -> dict[str, Path]:
    """The plan's files by key, each checked to hold what it held when the run finished."""
    files, changed = {}, []
    for entry in plan.files:
        path = Path(entry.path) if Path(entry.path).is_absolute() else run_dir / entry.path
        if not path.is_file():
            changed.append(f"{entry.path}: missing")
        elif path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            changed.append(f"{entry.path}: changed")
        files[entry.key] = path
    if changed:
        listed = "; ".join(changed[:10]) + (f"; and {len(changed) - 10} more" if len(changed) > 10 else "")
        raise StorageError(f"the run folder changed after the run finished, so its lineage would be wrong: {listed}",
                           where=str(run_dir), fix="run the pipeline again into this folder (finished stages are "
                           "reused); it stores the run when it ends")
    return files


def _stored_detail(files: int) -> str:
    return (f"{files} files, each read back after upload and checked by size and sha256; `{MANIFEST_NAME}` lists "
            "every file's sha256 and the lineage dataset -> teacher adapters -> student -> exports")


def _verified(store: ArtifactStore, run_id: str) -> Any:
    # quick: a folder hashes every byte again anyway; S3 compares the sha256 recorded with each object, whose bytes
    # the service already checked on upload (ChecksumSHA256), instead of downloading the whole run once more.
    try:
        return verify_manifest(store, run_id, quick=True)
    except StorageError:
        try:  # a manifest is the mark of a complete run: not one that does not verify
            store.delete(join_key(run_id, MANIFEST_NAME))
        except (MlcoreError, OSError) as error:
            log.warning("could not remove the manifest that failed verification: %s", error)
        raise


def _why(error: MlcoreError) -> str:
    return f"{error.where}: {error.message}" if error.where else error.message


__all__ = ["PLAN_NAME", "PlannedFile", "StorePlan", "StoredRun", "read_plan", "store_command", "store_run_folder",
           "write_plan"]
