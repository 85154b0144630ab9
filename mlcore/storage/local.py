"""A store in a local folder (the default, ``data/runs``): temp file beside the target, fsync, rename."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import IO

from mlcore.io import atomic_open, sha256_file
from mlcore.logs import get_logger
from mlcore.storage.base import ArtifactStore, StorageError, StoredFile, normalize_key

log = get_logger(__name__)

DEFAULT_LOCAL_ROOT = Path("data/runs")
_CHUNK = 1 << 22


def _is_temp_name(name: str) -> bool:
    # atomic_open's in-flight files: ".<name>.<random>.tmp"
    return name.startswith(".") and name.endswith(".tmp")


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        target.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _hash_handle(handle: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def copy_verified(source: Path, target: Path) -> tuple[str, int]:
    """Copy `source` to `target` atomically; the written bytes are read back and must hash like the source's."""
    with atomic_open(target, "w+b") as out:
        with open(source, "rb") as inp:
            sha, size = _copy_hashing(inp, out)
        out.flush()
        out.seek(0)
        written = _hash_handle(out)
        if written != (sha, size):
            raise StorageError(
                f"the copy does not match its source ({written[1]} bytes, sha256 {written[0][:12]}…; "
                f"expected {size} bytes, sha256 {sha[:12]}…)",
                where=str(target),
                fix="check the disk (space, errors) and store the file again",
            )
    return sha, size


class LocalStore(ArtifactStore):
    """Artifacts as plain files under `root`; keys map to paths below it."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_LOCAL_ROOT) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        return str(self.root)

    def path_for(self, key: str) -> Path:
        return self.root / normalize_key(key)

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> StoredFile:
        source = Path(local_path)
        if not source.is_file():
            raise StorageError("no such file to store", where=str(source), fix="check the path of the output")
        target = self.path_for(key)
        sha, size = copy_verified(source, target)
        log.debug("stored %s (%d bytes)", target, size)
        return StoredFile(normalize_key(key), sha, size)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        source = self.path_for(key)
        if not source.is_file():
            raise StorageError("no artifact stored under this key", where=str(source), fix="check the run id and key")
        target = Path(local_path)
        copy_verified(source, target)
        return target

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def stat(self, key: str) -> StoredFile:
        # A folder keeps no checksums beside the files, so the recorded and the computed hash are the same thing.
        return self.compute_sha256(key)

    def compute_sha256(self, key: str) -> StoredFile:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError("no artifact stored under this key", where=str(path), fix="check the run id and key")
        return StoredFile(normalize_key(key), sha256_file(path), path.stat().st_size)

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def probe(self) -> None:
        probe = self.root / f".mlcore-write-check.{secrets.token_hex(8)}.tmp"  # a temp name: never listed as a key
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"mlcore checks that it may write here\n")
            probe.unlink()
        except OSError as error:
            raise StorageError(
                f"cannot write to the store folder ({error.strerror or type(error).__name__})",
                where=str(self.root),
                fix="give a folder this user may create and write (or --store none to keep only the run folder)",
            ) from None

    def keys(self, prefix: str = "") -> list[str]:
        prefix = normalize_key(prefix, allow_empty=True)
        folder = self.root / prefix if prefix else self.root
        if not folder.is_dir():
            return []
        found = []
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                if not _is_temp_name(name):
                    found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        return sorted(found)
