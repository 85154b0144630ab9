"""The annotation sensor's step: what an annotation file holds now, as a sha256, wherever it lies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from mlcore.errors import DatasetError
from mlcore.io import sha256_file
from mlcore.storage.location import is_s3_url, split_s3_url
from tasks.aws import s3_client_options
from tasks.policy import retry_transient


@dataclass(frozen=True)
class AnnotationFingerprint:
    """An annotation file's location as a pipeline should receive it, and the sha256 of its bytes."""

    source: str  # an absolute local path, or the s3:// URL as given
    sha256: str
    size: int


def fingerprint_annotations(source: str, aws_credentials: str | None = None) -> AnnotationFingerprint:
    """sha256 of a local file, or of ``s3://bucket/key`` (the sha256 recorded at upload when the object carries one,
    as mlcore's store writes it; otherwise its bytes are read and hashed). AWS_CREDENTIALS: the name of a
    prefect-aws AwsCredentials block for S3; empty: the environment and the AWS chain."""
    if is_s3_url(source):
        from mlcore.storage.s3 import S3Store  # boto3 loads only when S3 is used

        bucket, key = split_s3_url(source)
        stored = S3Store(bucket, **s3_client_options(aws_credentials)).stat(key)
        return AnnotationFingerprint(source, stored.sha256, stored.size)
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise DatasetError("the annotation file does not exist", where=str(path),
                           fix="set the sensor's `source` parameter to a COCO JSON file or an s3://bucket/key URL")
    return AnnotationFingerprint(str(path), sha256_file(path), path.stat().st_size)


# Never cached: the point is to see the file as it is now. S3Store retries transient failures itself; the task
# retries once more for a local I/O hiccup. A missing file is the user's to fix and is not retried.
@task(name="fingerprint-annotations", cache_policy=NONE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, timeout_seconds=900)
def fingerprint_annotations_task(source: str, aws_credentials: str | None = None) -> AnnotationFingerprint:
    return fingerprint_annotations(source, aws_credentials)
