"""S3 through a prefect-aws AwsCredentials block saved on a real Prefect server, with no AWS_* in the environment.

The block points at a real S3 endpoint on loopback (moto's server); the store, the dataset mirror, the fetch task and
the annotation sensor reach it only through the block, and its secret shows up in no log, artifact or manifest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest

from mlcore.data.demo import make_demo_dataset
from mlcore.errors import ConfigError
from mlcore.storage import Lineage, StorageError, open_store, verify_manifest, write_manifest
from mlcore.storage.mirror import mirror_coco_dataset
from tests.unit.storage.conftest import moto_endpoint  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
KEY_ID = "AKIAMLCOREBLOCKKEY00"
SECRET = "mlcore-block-secret-never-shown"
REGION = "us-east-1"
IMAGES = 6
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def without_aws(environ: dict[str, str], home: Path) -> dict[str, str]:
    """ENVIRON with no AWS credentials, region or endpoint, and no ~/.aws or instance metadata to fall back on."""
    env = {key: value for key, value in environ.items() if key not in AWS_VARIABLES}
    env.update(AWS_CONFIG_FILE=str(home / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-creds"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def admin_client(endpoint: str) -> Any:
    """How the test itself reaches the endpoint, independent of the environment and of the code under test."""
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET)


def new_bucket(endpoint: str) -> str:
    name = f"mlcore-block-{uuid.uuid4().hex[:12]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


def upload_demo(endpoint: str, bucket: str, folder: Path, prefix: str = "demo", images: int = IMAGES) -> str:
    """A generated demo dataset under s3://BUCKET/PREFIX/ (annotations.json, images/); returns the JSON's URL."""
    source = make_demo_dataset(folder, num_images=images, negatives=0, seed=6)
    client = admin_client(endpoint)
    client.upload_file(str(source), bucket, f"{prefix}/annotations.json")
    for image in sorted((source.parent / "images").iterdir()):
        client.upload_file(str(image), bucket, f"{prefix}/images/{image.name}")
    return f"s3://{bucket}/{prefix}/annotations.json"


def save_block(endpoint: str) -> str:
    """An AwsCredentials block on the current Prefect server, pointing at ENDPOINT; returns its name."""
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    name = f"mlcore-test-s3-{uuid.uuid4().hex[:8]}"
    AwsCredentials(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION,
                   aws_client_parameters=AwsClientParameters(endpoint_url=endpoint)).save(name)
    return name


def flow_run_records(flow_run_id: Any) -> str:
    """Everything the server keeps about a flow run that a person can read: the run, its logs and artifacts."""
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, LogFilter,
                                                LogFilterFlowRunId)
    from prefect.logging.handlers import APILogHandler

    async def read() -> str:
        await APILogHandler.aflush()  # logs travel in batches: send what the finished run left in the queue
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        return "\n".join([run.model_dump_json(), *(log.message for log in logs),
                          *(artifact.model_dump_json() for artifact in artifacts)])

    return anyio.run(read)


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key in AWS_VARIABLES:
            monkeypatch.delenv(key)
    for key, value in without_aws({}, tmp_path).items():
        monkeypatch.setenv(key, value)


def test_store_mirror_fetch_and_sensor_work_through_the_block_alone(
        prefect_server, moto_endpoint, no_aws_env, tmp_path, caplog) -> None:  # noqa: F811
    from prefect import flow

    from flows.annotation_sensor import annotation_sensor
    from tasks.aws import s3_client_options
    from tasks.fetch import fetch_dataset_task

    caplog.set_level(logging.DEBUG, logger="mlcore")
    caplog.set_level(logging.DEBUG, logger="prefect")
    bucket = new_bucket(moto_endpoint)
    url = upload_demo(moto_endpoint, bucket, tmp_path / "demo")
    name = save_block(moto_endpoint)
    with pytest.raises(StorageError, match="no usable AWS credentials"):  # the environment alone reaches nothing
        open_store(f"s3://{bucket}/runs").check()

    # mlcore's store and mirror, with the client the block builds
    options = s3_client_options(name)
    store = open_store(f"s3://{bucket}/runs", **options)
    (tmp_path / "model.pt").write_bytes(os.urandom(2000))
    stored = [store.put_file(tmp_path / "model.pt", "run1/model.pt")]
    write_manifest(store, "run1", stored, Lineage(dataset_sha256="a" * 64, dataset_source=url))
    assert [entry.key for entry in verify_manifest(store, "run1").files] == ["model.pt"]
    mirrored = mirror_coco_dataset(url, tmp_path / "mirror", progress=False, **options)
    assert mirrored.downloaded == IMAGES + 1

    # the fetch task and the annotation sensor in flow runs, given only the block's name
    @flow(name="fetch-through-block")
    def fetch_only(destination: str, aws_credentials: str) -> Any:
        return fetch_dataset_task(url, destination, aws_credentials=aws_credentials)

    fetch_state = fetch_only(str(tmp_path / "source"), name, return_state=True)
    fetched = fetch_state.result()
    assert Path(fetched.data).read_bytes() == (tmp_path / "demo" / "annotations.json").read_bytes()
    assert len(list(Path(fetched.images).iterdir())) == IMAGES
    sensor_state = annotation_sensor(url, variable=f"mlcore-test-{name}", aws_credentials=name, return_state=True)
    seen = sensor_state.result()
    assert seen.changed and seen.sha256 == hashlib.sha256((tmp_path / "demo" / "annotations.json").read_bytes()
                                                          ).hexdigest()

    fetch_records = flow_run_records(fetch_state.state_details.flow_run_id)
    assert f"mirrored {url}" in fetch_records  # mlcore's log lines reach the server: the check below means something
    published = "\n".join([caplog.text, store.read_bytes("run1/manifest.json").decode(), fetch_records,
                           flow_run_records(sensor_state.state_details.flow_run_id)])
    assert SECRET not in published and KEY_ID not in published
    assert name in published  # the block is named where it is used; its contents are not


def test_an_unknown_block_is_one_clear_message(prefect_server, no_aws_env, tmp_path) -> None:
    from flows.annotation_sensor import annotation_sensor
    from flows.pipeline import training_pipeline
    from tasks.aws import load_aws_credentials

    with pytest.raises(ConfigError) as caught:
        load_aws_credentials("no-such-block")
    assert caught.value.where == "aws_credentials" and "AwsCredentials" in caught.value.fix
    assert "no AWS credentials block named 'no-such-block'" in caught.value.message

    state = training_pipeline(data="s3://mlcore-any/demo/annotations.json", aws_credentials="no-such-block",
                              output=str(tmp_path / "run"), store="none", return_state=True)
    assert state.is_failed() and state.message.startswith("aws_credentials: no AWS credentials block named")
    assert not (tmp_path / "run" / "source").exists()  # failed before fetching anything

    sensor = annotation_sensor("s3://mlcore-any/demo/annotations.json", aws_credentials="no-such-block",
                               return_state=True)
    assert sensor.is_failed() and "no AWS credentials block named 'no-such-block'" in sensor.message


__all__ = ["KEY_ID", "SECRET", "admin_client", "flow_run_records", "new_bucket", "save_block", "upload_demo",
           "without_aws"]
