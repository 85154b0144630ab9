"""``open_store``: a store from what a user types (``--store``): nothing, a folder, or ``s3://bucket/prefix``."""

from __future__ import annotations

import os
import re
from typing import Any

from mlcore.storage.base import ArtifactStore, StorageError
from mlcore.storage.local import DEFAULT_LOCAL_ROOT, LocalStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


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

        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StorageError(f"no bucket in {text!r}", fix="write the store as s3://<bucket>/<prefix>")
        return S3Store(bucket, prefix.strip("/"), **s3_options)
    raise StorageError(
        f"unsupported store {text!r}",
        fix="use a local folder, file:///path or s3://<bucket>/<prefix> (S3-compatible services: set AWS_ENDPOINT_URL)",
    )
