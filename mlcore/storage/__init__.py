"""Artifact storage for runs: a local folder by default, S3 (or any S3-compatible service) when asked.

    store = open_store(None)                      # data/runs
    store = open_store("s3://team-bucket/mlcore")  # endpoint, region, credentials from the environment
    store.probe()                                  # bucket, credentials and write access, checked before any work
    run_id = new_run_id()
    stored = store.put_dir("outputs", run_id)
    write_manifest(store, run_id, stored, lineage)
    verify_manifest(store, run_id)

    # a pipeline run folder, resumably (what is already stored is not sent again), its report saying the outcome
    stored_run = store_run_folder(read_plan("data/runs/latest"), store, "data/runs/latest")

    dataset = mirror_coco_dataset("s3://team-bucket/coco/annotations.json", "runs/latest/source")  # a local copy

Every transfer is verified (size and sha256) and all-or-nothing; transient failures are retried (for minutes with
``RetryPolicy.for_outages``), permanent ones (missing bucket, no access) raise one :class:`StorageError` saying where
and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcore.storage.base import ArtifactStore, StorageError, StoredFile, join_key
from mlcore.storage.local import DEFAULT_LOCAL_ROOT, LocalStore
from mlcore.storage.location import check_store, open_store, store_target
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
from mlcore.storage.publish import (
    PLAN_NAME,
    PlannedFile,
    StoredRun,
    StorePlan,
    read_plan,
    store_command,
    store_run_folder,
    write_plan,
)
from mlcore.storage.upload import UploadResult, upload_files

if TYPE_CHECKING:
    from mlcore.storage.mirror import MirroredDataset, mirror_coco_dataset
    from mlcore.storage.retry import RetryPolicy
    from mlcore.storage.s3 import S3Store
    from mlcore.storage.s3_client import make_s3_client

__all__ = [
    "DEFAULT_LOCAL_ROOT",
    "MANIFEST_NAME",
    "PLAN_NAME",
    "ArtifactStore",
    "Lineage",
    "LocalStore",
    "Manifest",
    "MirroredDataset",
    "PlannedFile",
    "RetryPolicy",
    "S3Store",
    "StorageError",
    "StorePlan",
    "StoredFile",
    "StoredRun",
    "UploadResult",
    "check_run_id",
    "check_store",
    "join_key",
    "make_s3_client",
    "mirror_coco_dataset",
    "new_run_id",
    "open_store",
    "read_manifest",
    "read_plan",
    "store_command",
    "store_run_folder",
    "store_target",
    "upload_files",
    "verify_manifest",
    "write_manifest",
    "write_plan",
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
