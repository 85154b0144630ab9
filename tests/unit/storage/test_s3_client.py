"""make_s3_client from a ready session and client options (what a Prefect AWS credentials block provides)."""

from __future__ import annotations

import os

import boto3
from botocore.config import Config

from mlcore.storage import S3Store
from mlcore.storage.s3 import RetryPolicy, make_s3_client
from tests.unit.storage.conftest import DUMMY_KEY_ID, DUMMY_SECRET, REGION


def test_a_session_and_client_options_keep_mlcore_retries_under_the_given_config(monkeypatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")  # the environment's region loses to the session's own
    session = boto3.Session(aws_access_key_id="AKIAFROMSESSION00000", aws_secret_access_key="s",
                            region_name="ap-south-1")
    client = make_s3_client(session=session, retry=RetryPolicy(botocore_attempts=7), client_options={
        "endpoint_url": "http://127.0.0.1:9", "verify": False, "config": Config(s3={"addressing_style": "path"},
                                                                               connect_timeout=3)})

    assert client.meta.region_name == "ap-south-1" and client.meta.endpoint_url == "http://127.0.0.1:9"
    config = client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}  # mlcore's, kept under the block's config
    assert config.s3 == {"addressing_style": "path"} and config.connect_timeout == 3  # the block's own settings win
    assert client._request_signer._credentials.access_key == "AKIAFROMSESSION00000"


def test_without_a_session_the_environment_is_used(aws_env: str) -> None:
    client = make_s3_client()
    assert client.meta.region_name == REGION and client.meta.endpoint_url == aws_env
    assert client._request_signer._credentials.access_key == DUMMY_KEY_ID


def test_a_store_works_through_a_client_built_from_a_session(bucket: str, aws_env: str, tmp_path, monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name)
    session = boto3.Session(aws_access_key_id=DUMMY_KEY_ID, aws_secret_access_key=DUMMY_SECRET, region_name=REGION)
    store = S3Store(bucket, "runs", client=make_s3_client(session=session, client_options={"endpoint_url": aws_env}))
    (tmp_path / "a.bin").write_bytes(os.urandom(100))

    stored = store.put_file(tmp_path / "a.bin", "run1/a.bin")

    assert store.compute_sha256("run1/a.bin") == stored
