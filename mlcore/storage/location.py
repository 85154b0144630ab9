"""``open_store``: a store from what a user types (``--store``): nothing, a folder, or ``s3://bucket/prefix``;
``store_target`` / ``check_store``: the pipeline's reading of ``--store`` and its check before the first stage; and
the small helpers that read ``s3://`` URLs."""

from __future__ import annotations

import os
import re
from typing import Any

from mlcore.storage.base import ArtifactStore, StorageError
from mlcore.storage.local import DEFAULT_LOCAL_ROOT, LocalStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
NO_STORE = frozenset({"", "none", "off", "false"})


def open_store(location: str | os.PathLike[str] | None = None, **s3_options: Any) -> ArtifactStore:
    """``None`` -> ``LocalStore("data/runs")``; ``"s3://bucket/prefix"`` -> ``S3Store``; anything else is a folder.

    `s3_options` go to :class:`~mlcore.storage.s3.S3Store` (``client``, ``endpoint_url``, ``region``, ...).
    """
    if location is None or str(location) == "":
        return LocalStore(DEFAULT_LOCAL_ROOT)
    text = os.fspath(location)
    match = _SCHEME.match(text)
    if not match:
        return LocalStore(text)
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "file":
        return LocalStore(rest)
    if scheme == "s3":
        from mlcore.storage.s3 import S3Store  # boto3 loads only when S3 is used

        bucket, prefix = split_s3_url(text)
        return S3Store(bucket, prefix, **s3_options)
    raise StorageError(
        f"unsupported store {text!r}",
        fix="use a local folder, file:///path or s3://<bucket>/<prefix> (S3-compatible services: set AWS_ENDPOINT_URL)",
    )


def store_target(store: str | None) -> str | None:
    """STORE as the pipeline takes it: None for no copy; a local folder made absolute (so links and the report name
    the real place); ``s3://...`` without a trailing slash. A location open_store cannot use raises StorageError."""
    if store is None or store.strip().lower() in NO_STORE:
        return None
    opened = open_store(store)
    if isinstance(opened, LocalStore):
        return str(opened.root.expanduser().resolve())
    return store.rstrip("/")


def check_store(target: str, **s3_options: Any) -> ArtifactStore:
    """The store at TARGET, once :meth:`~ArtifactStore.probe` found it usable (bucket there, credentials accepted,
    writing allowed); else the StorageError the store step would raise after training, raised now."""
    opened = open_store(target, **s3_options)
    opened.probe()
    return opened


def unusable_store_message(store: str | None, error: Exception) -> str:
    """How the pipeline (the flow's Failed state and the CLI) reports a store that failed its check."""
    return f"store {store!r} cannot be used: {error}"


def is_s3_url(location: object) -> bool:
    """True for ``s3://...`` (any case), False for paths, None and everything else."""
    return isinstance(location, str) and location[:5].lower() == "s3://"


def split_s3_url(url: str) -> tuple[str, str]:
    """``"s3://bucket/a/b.json"`` -> ``("bucket", "a/b.json")`` (the key without surrounding slashes)."""
    if not is_s3_url(url):
        raise StorageError(f"not an S3 URL: {url!r}", fix="write it as s3://<bucket>/<key>")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise StorageError(f"no bucket in {url!r}", fix="write it as s3://<bucket>/<key or prefix>")
    return bucket, key.strip("/")
