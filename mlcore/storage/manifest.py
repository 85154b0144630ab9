"""``manifest.json``: what a stored run holds (each file's key, size, sha256) and where its models came from.

A store keeps runs side by side, one folder each (``<run-id>/...``; locally ``data/runs/<run-id>/...``). The
manifest is written last, so a run folder without one is an unfinished upload. Keys in the manifest are relative to
the run folder: a run copied to another store verifies unchanged. Nothing about the store itself (endpoint, region,
credentials, bucket) is written into it.

    stored = store.put_dir("outputs/student", f"{run_id}/student")
    write_manifest(store, run_id, stored, Lineage(dataset_sha256=..., student_sha256=..., exports={...}))
    verify_manifest(store, run_id)  # raises StorageError naming every missing or changed file
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mlcore.logs import get_logger
from mlcore.storage.base import ArtifactStore, StorageError, StoredFile, join_key, normalize_key, relative_key

log = get_logger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Lineage(BaseModel):
    """Where the run's models came from: dataset -> teacher adapters -> student -> exports, each by sha256."""

    model_config = ConfigDict(extra="forbid")

    dataset_sha256: Sha256 = Field(
        description="sha256 of the dataset's annotation file, as the validate step reports it"
    )
    dataset_source: str | None = Field(
        default=None, description="where the dataset was read from (a path or s3:// URL), for people; never verified"
    )
    teacher_adapters: dict[str, Sha256] = Field(
        default_factory=dict,
        description="teacher name (e.g. 'grounding_dino', 'sam') -> sha256 of its LoRA adapter file",
    )
    student_sha256: Sha256 | None = Field(default=None, description="sha256 of the distilled student's checkpoint")
    exports: dict[str, Sha256] = Field(
        default_factory=dict, description="export file name (e.g. 'student.onnx', 'student.int8.onnx') -> sha256"
    )


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="path of the file inside the run folder, '/'-separated")
    sha256: Sha256
    size: int = Field(ge=0, description="bytes")


class Manifest(BaseModel):
    """The contents of ``<run>/manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    format: int = Field(default=MANIFEST_FORMAT, description="manifest layout version")
    run_id: str
    created_at: str = Field(description="UTC time the manifest was written, ISO 8601")
    files: list[ManifestFile]
    lineage: Lineage


def new_run_id() -> str:
    """A sortable, unique run id: ``20261126-030000-1a2b3c`` (UTC time, then random hex)."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise StorageError(
            f"invalid run id {run_id!r}",
            fix="use letters, digits, '.', '_' and '-' (up to 128 characters), e.g. one from new_run_id()",
        )
    return run_id


def write_manifest(
    store: ArtifactStore,
    run_prefix: str,
    files: Iterable[StoredFile] | None,
    lineage: Lineage | Mapping[str, Any],
) -> Manifest:
    """Write ``<run_prefix>/manifest.json`` listing `files` (what ``put_file`` / ``put_dir`` returned).

    `files=None` lists every file stored under the run instead (sizes and sha256s as recorded by the store).
    """
    run_prefix = normalize_key(run_prefix)
    manifest_key = join_key(run_prefix, MANIFEST_NAME)
    lineage = _lineage(lineage, store.url_for(manifest_key))
    if files is None:
        files = [store.stat(key) for key in store.keys(run_prefix) if key != manifest_key]
    entries: dict[str, ManifestFile] = {}
    for stored in files:
        key = relative_key(normalize_key(stored.key), run_prefix)
        if key == MANIFEST_NAME:
            continue
        entry = ManifestFile(key=key, sha256=stored.sha256, size=stored.size)
        if entries.get(key, entry) != entry:
            raise StorageError(f"{key!r} is listed twice with different contents", where=store.url_for(manifest_key))
        entries[key] = entry
    manifest = Manifest(
        run_id=run_prefix.rsplit("/", 1)[-1],
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        files=sorted(entries.values(), key=lambda entry: entry.key),
        lineage=lineage,
    )
    payload = json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    store.write_bytes(payload.encode("utf-8"), manifest_key)
    log.info("wrote %s (%d files)", store.url_for(manifest_key), len(entries))
    return manifest


def read_manifest(store: ArtifactStore, run_prefix: str) -> Manifest:
    manifest_key = join_key(run_prefix, MANIFEST_NAME)
    where = store.url_for(manifest_key)
    if not store.exists(manifest_key):
        raise StorageError(
            "this run has no manifest.json: it was not stored completely, or it is not a run folder",
            where=where,
            fix="check the run id; if the run's upload was interrupted, store it again",
        )
    try:
        return Manifest.model_validate_json(store.read_bytes(manifest_key))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise StorageError(f"manifest.json is not valid: {path}: {first['msg']}", where=where) from None


def verify_manifest(store: ArtifactStore, run_prefix: str, *, quick: bool = False) -> Manifest:
    """Check every file the manifest lists: present, same size, same sha256 (computed from the stored bytes).

    `quick` compares against what the store recorded at upload instead of reading every byte (S3: metadata). Raises
    one StorageError naming every problem; returns the manifest when all files match.
    """
    run_prefix = normalize_key(run_prefix)
    manifest = read_manifest(store, run_prefix)
    problems = []
    for entry in manifest.files:
        key = join_key(run_prefix, entry.key)
        if not store.exists(key):
            problems.append(f"{entry.key}: missing")
            continue
        actual = store.stat(key) if quick else store.compute_sha256(key)
        if actual.size != entry.size:
            problems.append(f"{entry.key}: {actual.size} bytes, manifest says {entry.size}")
        elif actual.sha256 != entry.sha256:
            problems.append(f"{entry.key}: sha256 {actual.sha256[:12]}…, manifest says {entry.sha256[:12]}…")
    if problems:
        more = f"\n    … and {len(problems) - 20} more" if len(problems) > 20 else ""
        listed = "\n    ".join(problems[:20]) + more
        raise StorageError(
            f"{len(problems)} of {len(manifest.files)} stored files do not match the manifest:\n    {listed}",
            where=store.url_for(join_key(run_prefix, MANIFEST_NAME)),
            fix="do not use these artifacts; store the run again from its outputs",
        )
    log.info("verified %d files of %s", len(manifest.files), store.url_for(run_prefix))
    return manifest


def _lineage(lineage: Lineage | Mapping[str, Any], where: str) -> Lineage:
    if isinstance(lineage, Lineage):
        return lineage
    try:
        return Lineage.model_validate(dict(lineage))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise StorageError(
            f"lineage.{path}: {first['msg']}",
            where=where,
            fix="give each sha256 as 64 lowercase hex characters (mlcore.io.sha256_file)",
        ) from None
