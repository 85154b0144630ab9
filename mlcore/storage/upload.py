"""Resumable upload: files go to a store unless the same bytes are already there, so an interrupted upload, tried
again, sends only what did not arrive.

    result = upload_files(store, {"run1/student/best.pt": Path("run/student/best.pt"), ...}, folder="run1")
    result.sent, result.skipped   # keys uploaded now, keys already stored with the same size and sha256

"The same bytes" is what the store recorded for the object: in S3 the sha256 mlcore writes into each object's
metadata at upload (after the service checked the bytes against it), read with one HEAD request; in a folder, the
file's own hash. One listing of `folder` first means a fresh upload costs no extra request per file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlcore.io import sha256_file
from mlcore.logs import get_logger
from mlcore.storage.base import ArtifactStore, StoredFile, normalize_key

log = get_logger(__name__)


@dataclass
class UploadResult:
    """What an upload did, by key."""

    stored: dict[str, StoredFile] = field(default_factory=dict)
    """Every file, as it now lies in the store."""
    sent: list[str] = field(default_factory=list)
    """Keys uploaded now."""
    skipped: list[str] = field(default_factory=list)
    """Keys that already held the same bytes."""


def upload_files(store: ArtifactStore, files: Mapping[str, Path], *, folder: str = "") -> UploadResult:
    """Store each local file under its key (all inside `folder`), skipping keys that already hold the same size and
    sha256. Each upload is verified by the store; failures raise its StorageError (after its own retries)."""
    present = set(store.keys(normalize_key(folder, allow_empty=True)))
    result = UploadResult()
    for key, path in files.items():
        key = normalize_key(key)
        if key in present:
            found = store.lookup(key)
            if found is not None and found == StoredFile(key, sha256_file(path), Path(path).stat().st_size):
                result.stored[key] = found
                result.skipped.append(key)
                continue
        result.stored[key] = store.put_file(path, key)
        result.sent.append(key)
    if result.skipped:
        log.info("%d of %d files were already in %s and were not sent again", len(result.skipped), len(files),
                 store.url_for(folder))
    return result


__all__ = ["UploadResult", "upload_files"]
