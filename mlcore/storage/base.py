"""The artifact store interface: files put and got by key, every transfer verified by size and sha256.

A key is a relative, ``/``-separated path inside the store (``<run-id>/student/best.pt``); the same keys work in a
local folder and in an S3 bucket, so a run can move between them unchanged.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcore.errors import MlcoreError


class StorageError(MlcoreError):
    """An artifact store cannot be read or written (missing bucket, no access, unreachable, corrupt object)."""


@dataclass(frozen=True)
class StoredFile:
    """One file as it lies in a store: its key and the size and sha256 of its bytes."""

    key: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def normalize_key(key: str, *, allow_empty: bool = False) -> str:
    """Check that `key` is a clean relative path (no ``..``, no leading ``/``, no empty parts) and return it."""
    text = str(key).strip("/") if allow_empty else str(key)
    if not text:
        if allow_empty:
            return ""
        raise StorageError("an artifact key is empty", fix="give a relative path such as '<run-id>/report.md'")
    parts = text.split("/")
    if "\\" in text or text.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise StorageError(
            f"invalid artifact key {key!r}",
            fix="use a relative '/'-separated path without '.', '..', empty parts or backslashes",
        )
    if any(ord(char) < 32 for char in text):
        raise StorageError(f"invalid artifact key {key!r}: it contains control characters")
    return text


def join_key(*parts: str) -> str:
    """``join_key("run1", "student/best.pt")`` -> ``"run1/student/best.pt"``; empty parts are skipped."""
    return normalize_key("/".join(part.strip("/") for part in parts if part and part.strip("/")))


def relative_key(key: str, prefix: str) -> str:
    """`key` relative to the folder `prefix` (``""`` means the store's root)."""
    prefix = normalize_key(prefix, allow_empty=True)
    if not prefix:
        return key
    if not key.startswith(prefix + "/"):
        raise StorageError(f"artifact key {key!r} is not inside {prefix!r}")
    return key[len(prefix) + 1 :]


class ArtifactStore(ABC):
    """Where runs are kept. Writes are all-or-nothing: a reader sees the old object, the new one, or none."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The store's location for people (a path or ``s3://bucket/prefix``); never holds credentials."""

    def url_for(self, key: str) -> str:
        key = normalize_key(key, allow_empty=True)
        return f"{self.url.rstrip('/')}/{key}" if key else self.url

    @abstractmethod
    def put_file(self, local_path: str | os.PathLike[str], key: str) -> StoredFile:
        """Store a local file under `key`, verified against the local file's size and sha256."""

    @abstractmethod
    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        """Fetch `key` into `local_path` (atomically, verified) and return the path."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under exactly `key`."""

    @abstractmethod
    def stat(self, key: str) -> StoredFile:
        """Size and sha256 of a stored object, from what was recorded at upload where the store keeps it."""

    @abstractmethod
    def compute_sha256(self, key: str) -> StoredFile:
        """Size and sha256 of a stored object, computed from its bytes as they are now."""

    @abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """Every key inside the folder `prefix` (all of them for ``""``), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under `key`; nothing stored there is not an error."""

    @abstractmethod
    def probe(self) -> None:
        """Raise a StorageError now, with its fix, unless files can be stored here (a small object is written and
        removed): the check a run makes before its first stage instead of finding out after training."""

    def lookup(self, key: str) -> StoredFile | None:
        """Size and sha256 of what is stored under `key` as the store recorded it, or None when there is nothing
        (or nothing it can vouch for): what an interrupted upload checks before sending a file again."""
        return self.stat(key) if self.exists(key) else None

    def put_dir(self, local_dir: str | os.PathLike[str], prefix: str) -> list[StoredFile]:
        """Store every file under `local_dir` (recursively, sorted) as ``<prefix>/<relative path>``."""
        root = Path(local_dir)
        if not root.is_dir():
            raise StorageError("not a directory", where=str(root), fix="pass the folder whose files should be stored")
        files = sorted(path for path in root.rglob("*") if path.is_file())
        return [self.put_file(path, join_key(prefix, path.relative_to(root).as_posix())) for path in files]

    def get_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[Path]:
        """Fetch every key inside the folder `prefix` into `local_dir`, keeping the relative layout."""
        keys = self.keys(prefix)
        if not keys:
            raise StorageError("nothing is stored here", where=self.url_for(prefix), fix="check the run id or prefix")
        root = Path(local_dir)
        return [self.get_file(key, root / relative_key(key, prefix)) for key in keys]

    def write_bytes(self, data: bytes, key: str) -> StoredFile:
        """Store a small in-memory payload (a manifest, a report) through the same verified path as files."""
        with tempfile.TemporaryDirectory(prefix="mlcore-store-") as tmp:
            path = Path(tmp) / "payload"
            path.write_bytes(data)
            return self.put_file(path, key)

    def read_bytes(self, key: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="mlcore-store-") as tmp:
            return self.get_file(key, Path(tmp) / "payload").read_bytes()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # Last in the class body: once defined, the name `list` means this method inside the class.
    def list(self, prefix: str = "") -> list[str]:  # noqa: A003 - the name the interface promises
        """Same as :meth:`keys`."""
        return self.keys(prefix)
