"""Artifact storage for runs: a local folder by default, S3 (or any S3-compatible service) when asked.

    store = open_store(None)                      # data/runs
    store = open_store("s3://team-bucket/mlcore")  # endpoint, region, credentials from the environment
    run_id = new_run_id()
    stored = store.put_dir("outputs", run_id)
    write_manifest(store, run_id, stored, lineage)
    verify_manifest(store, run_id)

    dataset = mirror_coco_dataset("s3://team-bucket/coco/annotations.json", "runs/latest/source")  # a local copy

Every transfer is verified (size and sha256) and all-or-nothing; transient failures are retried, permanent ones
(missing bucket, no access) raise one :class:`StorageError` saying where and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcore.storage.base import ArtifactStore, StorageError, StoredFile, join_key
from mlcore.storage.local import DEFAULT_LOCAL_ROOT, LocalStore
from mlcore.storage.location import open_store
from mlcore.storage.manifest import (
    MANIFEST_NAME,
    Lineage,
    Manifest,
    check_run_id,
    new_run_id,
    read_manifest,
    verify_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    from mlcore.storage.mirror import MirroredDataset, mirror_coco_dataset
    from mlcore.storage.s3 import RetryPolicy, S3Store, make_s3_client

__all__ = [
    "DEFAULT_LOCAL_ROOT",
    "MANIFEST_NAME",
    "ArtifactStore",
    "Lineage",
    "LocalStore",
    "Manifest",
    "MirroredDataset",
    "RetryPolicy",
    "S3Store",
    "StorageError",
    "StoredFile",
    "check_run_id",
    "join_key",
    "make_s3_client",
    "mirror_coco_dataset",
    "new_run_id",
    "open_store",
    "read_manifest",
    "verify_manifest",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    # boto3 takes a while to import; load it only when S3 is used.
    if name in ("S3Store", "RetryPolicy", "make_s3_client"):
        from mlcore.storage import s3

        return getattr(s3, name)
    if name in ("MirroredDataset", "mirror_coco_dataset"):
        from mlcore.storage import mirror

        return getattr(mirror, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
