"""Fetching a dataset that lives in S3 as a Prefect task: the pipeline's s3:// parameters become a local copy.

``data``, ``images``, ``val`` and ``test`` may each be ``s3://...``; each annotation file in S3 is mirrored with the
images it names (mlcore.storage.mirror) into the run's ``source/`` folder, and the flow then runs on the local paths.
A rerun downloads only what changed in S3 since. Credentials: the worker's environment, or the prefect-aws
AwsCredentials block named by ``aws_credentials``.

Retries: S3Store retries each transient failure itself; when it gives up the task raises S3Unreachable so Prefect
tries the whole fetch again (twice). A missing object, bucket or block, or no access, fails the task at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.storage import StorageError
from mlcore.storage.location import is_s3_url
from tasks.aws import S3Unreachable, gave_up_on_transient_failures, s3_client_options
from tasks.policy import retry_transient

TIMEOUT_SECONDS = 6 * 3600  # a full COCO-sized dataset over a slow link


@dataclass
class FetchedDataset:
    """The pipeline's dataset parameters with every s3:// one replaced by its local copy."""

    data: str
    images: str | None = None
    val: str | None = None
    test: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # parameter -> the s3:// URL it was fetched from
    downloaded: int = 0
    reused: int = 0


def needs_fetch(*locations: str | None) -> bool:
    """True when any of the dataset parameters is an s3:// URL."""
    return any(is_s3_url(location) for location in locations)


def fetch_dataset(data: str, destination: str | Path, *, images: str | None = None, val: str | None = None,
                  test: str | None = None, aws_credentials: str | None = None, progress: bool = False
                  ) -> FetchedDataset:
    """Mirror the s3:// ones among DATA (with IMAGES), VAL and TEST into DESTINATION; local ones stay as given.
    VAL's and TEST's images are found beside their JSON, as the flow's validate steps look for them."""
    from mlcore.storage.mirror import mirror_coco_dataset  # boto3 loads only when S3 is used

    options = s3_client_options(aws_credentials)
    fetched = FetchedDataset(data=data, images=images, val=val, test=test,
                             sources={name: url for name, url in (("data", data), ("images", images), ("val", val),
                                                                  ("test", test)) if is_s3_url(url)})
    if is_s3_url(data) or is_s3_url(images):
        mirrored = mirror_coco_dataset(data, destination, images=images, progress=progress, **options)
        fetched.data = str(mirrored.annotations)
        fetched.images = str(mirrored.images) if mirrored.images is not None else None
        fetched.downloaded, fetched.reused = mirrored.downloaded, mirrored.reused
    for name in ("val", "test"):
        url = getattr(fetched, name)
        if is_s3_url(url):
            mirrored = mirror_coco_dataset(url, destination, progress=progress, **options)
            setattr(fetched, name, str(mirrored.annotations))
            fetched.downloaded += mirrored.downloaded
            fetched.reused += mirrored.reused
    return fetched


# Never cached: S3 may have changed since the last run; the mirror's own index makes an unchanged dataset cost one
# listing. Retried only when S3 stayed unreachable (see the module docstring).
@task(name="fetch-dataset", retries=2, retry_delay_seconds=60, retry_condition_fn=retry_transient, cache_policy=NONE,
      timeout_seconds=TIMEOUT_SECONDS)
def fetch_dataset_task(data: str, destination: str, images: str | None = None, val: str | None = None,
                       test: str | None = None, aws_credentials: str | None = None) -> FetchedDataset | State:
    """The local copy of the s3:// dataset parameters; a Failed state naming the object and the fix when one cannot
    be fetched."""
    try:
        return fetch_dataset(data, destination, images=images, val=val, test=test, aws_credentials=aws_credentials,
                             progress=sys.stderr.isatty())
    except StorageError as error:
        if gave_up_on_transient_failures(error):
            raise S3Unreachable(str(error)) from None
        return Failed(message=str(error))
    except MlcoreError as error:
        return Failed(message=str(error))


__all__ = ["FetchedDataset", "fetch_dataset", "fetch_dataset_task", "needs_fetch"]
