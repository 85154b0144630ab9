"""A store in an S3 bucket (AWS or any S3-compatible endpoint) through boto3.

Endpoint, region and credentials come from the arguments, else from the environment and the standard AWS chain
(``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, instance
roles), or arrive inside a ready client (e.g. from a Prefect AWS credentials block). None of them is logged, put in
an error message or written next to the artifacts; only ``s3://bucket/prefix/key`` is.

Why no temporary key: S3 makes an object visible only when its PutObject or CompleteMultipartUpload succeeds, and
then whole, replacing any previous version in one step. A failed or killed upload leaves at most invisible multipart
parts (s3transfer aborts them on failure; a lifecycle rule ``AbortIncompleteMultipartUpload`` reaps what a killed
process leaves). The service also checks the bytes before accepting them: a single-part upload carries the file's
sha256 (``ChecksumSHA256``), each part of a multipart upload its own. A temp key plus copy would double the traffic
(and need a multipart copy above 5 GB) without adding a guarantee. After each upload the object's size and the
sha256 recorded in its metadata are read back; a mismatch deletes it and uploads again. A run counts as stored only
once its ``manifest.json``, written last, exists.

Retries: :class:`RetryPolicy` (retry.py) around each whole operation, botocore's own inside it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from s3transfer.manager import TransferManager

from mlcore.io import atomic_open, sha256_file
from mlcore.logs import get_logger
from mlcore.storage.base import ArtifactStore, StorageError, StoredFile, normalize_key
from mlcore.storage.retry import RetryPolicy
from mlcore.storage.s3_client import make_s3_client
from mlcore.storage.s3_errors import (
    MISSING_KEY_CODES,
    VerificationMismatch,
    describe,
    duration,
    error_code,
    exhausted_error,
    is_s3_failure,
    is_transient,
    permanent_error,
)

log = get_logger(__name__)

T = TypeVar("T")
MiB = 1024 * 1024
SHA256_METADATA = "sha256"  # stored as the object's x-amz-meta-sha256: the whole file's hex digest

DEFAULT_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=32 * MiB,  # files at or above this go up in parts
    multipart_chunksize=16 * MiB,  # S3's minimum part size is 5 MiB
    max_concurrency=8,
)
PROBE_FOLDER = ".mlcore-write-check"  # probe() writes and removes one small object here, under the store's prefix
PROBE_BODY = b"mlcore checks that it may write here; this object is removed at once\n"
PROBE_WINDOW_S = 30.0  # how long probe() rides out an endpoint that does not answer


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says about one object: its key (relative to the store's prefix), size and ETag."""

    key: str
    size: int
    etag: str


def _b64_sha256(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


class S3Store(ArtifactStore):
    """Artifacts as objects under ``s3://bucket/prefix/``; keys map to ``prefix/key``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        transfer_config: TransferConfig | None = None,
        retry: RetryPolicy | None = None,
        checksums: bool = True,
    ) -> None:
        """`client` wins over `endpoint_url` / `region`.

        `checksums=False` is for S3-compatible services that reject checksum headers (set
        ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` there too); uploads are then checked by read-back only.
        """
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid bucket name {bucket!r}", fix="use s3://<bucket>/<prefix>")
        self.bucket = bucket
        self.prefix = normalize_key(prefix, allow_empty=True)
        self.retry = retry or RetryPolicy()
        self.transfer_config = transfer_config or DEFAULT_TRANSFER_CONFIG
        self.checksums = checksums
        if client is None:
            client = make_s3_client(endpoint_url=endpoint_url, region=region, retry=self.retry)
        self.client = client
        self._bucket_seen = False

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _object_key(self, key: str) -> str:
        key = normalize_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- the retry loop every operation goes through -------------------------------------------------------------

    def attempt(
        self,
        action: str,
        key: str,
        operation: Callable[[], T],
        *,
        bare_404_means_bucket: bool = False,
        retry: RetryPolicy | None = None,
    ) -> T:
        """OPERATION's result, trying again after a transient S3 failure as `retry` (default: the store's policy)
        allows; a permanent failure, or the last transient one, becomes a StorageError naming
        ``s3://bucket/prefix/KEY`` (never the endpoint or the credentials)."""
        policy = retry or self.retry
        where = self.url_for(key)
        failing_since: float | None = None
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                return operation()
            except Exception as exc:
                if not is_s3_failure(exc):
                    raise
                if not is_transient(exc):
                    raise permanent_error(
                        exc, action=action, where=where, bucket=self.bucket, bare_404_means_bucket=bare_404_means_bucket
                    ) from None
                if failing_since is None:
                    failing_since = started
                failing_for = time.monotonic() - failing_since
                wait = policy.wait_before_next(attempt, failing_for)
                if wait is None:
                    # raised inside the except block: the last failure stays its __context__ (tasks read it)
                    raise exhausted_error(
                        exc, action=action, where=where, attempts=attempt, seconds=failing_for
                    ) from None
                log.warning(
                    "%s of %s failed (%s); trying again in %.1f s (try %d, failing for %s; %s)",
                    action,
                    where,
                    describe(exc),
                    wait,
                    attempt + 1,
                    duration(failing_for),
                    policy.describe(),
                )
                time.sleep(wait)

    def check(self, *, retry: RetryPolicy | None = None) -> None:
        """Fail now, with one clear error, if the bucket is missing or the credentials cannot reach it."""
        self.attempt(
            "check bucket",
            "",
            lambda: self.client.head_bucket(Bucket=self.bucket),
            bare_404_means_bucket=True,
            retry=retry,
        )
        self._bucket_seen = True

    def probe(self, *, window_s: float = PROBE_WINDOW_S) -> None:
        """Fail now, with the messages the store step would give hours later, unless the bucket exists, the
        credentials are accepted and they may write here: a small object is written under the prefix and removed.

        Transient failures are retried for `window_s` seconds only, so an endpoint that is down is reported before
        any work starts rather than ridden out. Not being allowed to remove the object is logged, not raised: the
        store itself deletes only uploads that read back wrong.
        """
        policy = replace(self.retry, attempts=None, window_s=window_s)
        self.check(retry=policy)
        key = f"{PROBE_FOLDER}/{secrets.token_hex(8)}"
        object_key = self._object_key(key)
        extra = {"ChecksumSHA256": _b64_sha256(hashlib.sha256(PROBE_BODY).hexdigest())} if self.checksums else {}
        self.attempt(
            "write check",
            key,
            lambda: self.client.put_object(Bucket=self.bucket, Key=object_key, Body=PROBE_BODY, **extra),
            retry=policy,
        )
        try:
            self.attempt(
                "remove write check",
                key,
                lambda: self.client.delete_object(Bucket=self.bucket, Key=object_key),
                retry=policy,
            )
        except StorageError as error:
            log.warning("the write check object was left in the store: %s", error)

    def _head(self, key: str, action: str) -> dict[str, Any] | None:
        """The object's headers, or None when there is no such key (after making sure the bucket itself exists)."""

        def head() -> dict[str, Any] | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self._object_key(key), ChecksumMode="ENABLED")
            except ClientError as exc:
                if error_code(exc) in MISSING_KEY_CODES:
                    return None
                raise

        found = self.attempt(action, key, head)
        if found is None and not self._bucket_seen:
            self.check()  # a missing bucket also answers HEAD with a bare 404: tell the two apart
        return found

    def _missing(self, key: str) -> StorageError:
        return StorageError(
            "no artifact stored under this key", where=self.url_for(key), fix="check the run id and key"
        )

    # -- operations ---------------------------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> StoredFile:
        source = Path(local_path)
        if not source.is_file():
            raise StorageError("no such file to store", where=str(source), fix="check the path of the output")
        key = normalize_key(key)
        object_key = self._object_key(key)
        sha, size = sha256_file(source), source.stat().st_size
        extra: dict[str, Any] = {"Metadata": {SHA256_METADATA: sha}}
        if self.checksums:
            if size < self.transfer_config.multipart_threshold:
                extra["ChecksumSHA256"] = _b64_sha256(sha)  # S3 rejects the PUT unless the bytes hash to this
            else:
                extra["ChecksumAlgorithm"] = "SHA256"  # each part is checked; SHA256 has no full-object MPU form

        tries = 0

        def upload_and_check() -> None:
            nonlocal tries
            tries += 1
            if tries > 1 and self._holds(object_key, sha, size):
                return  # the previous try's upload landed and only its answer or read-back was lost
            with TransferManager(self.client, self.transfer_config) as manager:
                manager.upload(str(source), self.bucket, object_key, extra_args=extra).result()
            head = self.client.head_object(Bucket=self.bucket, Key=object_key, ChecksumMode="ENABLED")
            problem = _upload_mismatch(head, sha, size)
            if problem:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
                raise VerificationMismatch(problem)

        self.attempt("upload", key, upload_and_check)
        self._bucket_seen = True
        log.debug("stored %s (%d bytes)", self.url_for(key), size)
        return StoredFile(key, sha, size)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        key = normalize_key(key)
        head = self._head(key, "download")
        if head is None:
            raise self._missing(key)
        expected_size, expected_sha = int(head["ContentLength"]), head.get("Metadata", {}).get(SHA256_METADATA)
        target = Path(local_path)

        def download() -> None:
            with atomic_open(target, "w+b") as out:
                with TransferManager(self.client, self.transfer_config) as manager:
                    manager.download(self.bucket, self._object_key(key), out).result()
                out.flush()
                out.seek(0)
                sha, size = _hash_stream(iter(lambda: out.read(4 * MiB), b""))
                if size != expected_size or (expected_sha and sha != expected_sha):
                    # Not retried: bytes that differ from what was recorded at upload were changed after it.
                    raise StorageError(
                        f"the stored object does not match what was uploaded ({size} bytes, sha256 {sha[:12]}…; "
                        f"recorded {expected_size} bytes, sha256 {(expected_sha or '?')[:12]}…)",
                        where=self.url_for(key),
                        fix="the object was changed or damaged after upload: store the run again",
                    )

        self.attempt("download", key, download)
        return target

    def _holds(self, object_key: str, sha: str, size: int) -> bool:
        """Whether `object_key` already holds these bytes (same size, recorded sha256 and checksum)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=object_key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if error_code(exc) in MISSING_KEY_CODES:
                return False
            raise
        return _upload_mismatch(head, sha, size) is None

    def lookup(self, key: str) -> StoredFile | None:
        """Size and recorded sha256 of the object under `key` (one HEAD request); None when there is none, or it
        records no sha256 (not stored by mlcore)."""
        key = normalize_key(key)
        head = self._head(key, "look up")
        recorded = (head or {}).get("Metadata", {}).get(SHA256_METADATA)
        if head is None or not recorded:
            return None
        return StoredFile(key, recorded, int(head["ContentLength"]))

    def delete(self, key: str) -> None:
        key = normalize_key(key)
        self.attempt("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key)))

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's headers (ContentLength, ETag, Metadata, ...), or None when nothing is stored under `key`."""
        return self._head(normalize_key(key), "look up")

    def exists(self, key: str) -> bool:
        return self._head(normalize_key(key), "look up") is not None

    def stat(self, key: str) -> StoredFile:
        key = normalize_key(key)
        head = self._head(key, "look up")
        if head is None:
            raise self._missing(key)
        recorded = head.get("Metadata", {}).get(SHA256_METADATA)
        if not recorded:  # uploaded by something else: hash the bytes
            return self.compute_sha256(key)
        return StoredFile(key, recorded, int(head["ContentLength"]))

    def compute_sha256(self, key: str) -> StoredFile:
        key = normalize_key(key)

        def read() -> tuple[str, int]:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))["Body"]
            except ClientError as exc:
                if error_code(exc) in ("NoSuchKey", "404"):
                    raise self._missing(key) from None
                raise
            with body:
                return _hash_stream(body.iter_chunks(4 * MiB))

        sha, size = self.attempt("read", key, read)
        return StoredFile(key, sha, size)

    def keys(self, prefix: str = "") -> list[str]:
        return [item.key for item in self.listing(prefix)]

    def listing(self, prefix: str = "") -> list[ObjectInfo]:
        """Key, size and ETag of every object inside the folder `prefix`, sorted by key: one request per 1000."""
        prefix = normalize_key(prefix, allow_empty=True)
        folder = "/".join(part for part in (self.prefix, prefix) if part)
        list_prefix = f"{folder}/" if folder else ""
        strip = len(f"{self.prefix}/") if self.prefix else 0

        def listing() -> list[ObjectInfo]:
            found = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=list_prefix):
                found.extend(ObjectInfo(item["Key"][strip:], int(item["Size"]), str(item.get("ETag", "")))
                             for item in page.get("Contents", []) if not item["Key"].endswith("/"))
            return sorted(found, key=lambda item: item.key)

        return self.attempt("list", prefix, listing)


def _hash_stream(chunks: Any) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _upload_mismatch(head: dict[str, Any], sha: str, size: int) -> str | None:
    """Why the object just uploaded is not the local file, or None when it is."""
    stored_size = int(head.get("ContentLength", -1))
    if stored_size != size:
        return f"the stored object has {stored_size} bytes, the local file {size}"
    if head.get("Metadata", {}).get(SHA256_METADATA) != sha:
        return "the stored object's recorded sha256 differs from the local file's"
    checksum = head.get("ChecksumSHA256")
    multipart = "-" in str(head.get("ETag", ""))
    # A multipart object's checksum is a checksum of part checksums; only a single-part one is the file's sha256.
    if checksum and not multipart and "-" not in checksum and checksum != _b64_sha256(sha):
        return "the stored object's SHA256 checksum differs from the local file's"
    return None
