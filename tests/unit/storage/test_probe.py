"""The store's check before any work: bucket there, credentials accepted, writing allowed, with the messages the
store step gives; nothing is left behind."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from mlcore.storage import LocalStore, S3Store, StorageError, check_store, store_target
from mlcore.storage.s3 import RetryPolicy
from tests.unit.storage.conftest import FakeClock, FlakyProxy

FAST = RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, botocore_attempts=1)


def test_a_usable_bucket_passes_and_keeps_nothing(bucket: str, flaky_proxy: FlakyProxy) -> None:
    S3Store(bucket, "team/runs", endpoint_url=flaky_proxy.url).probe()

    assert [line.split(" ")[0] for line in flaky_proxy.requests] == ["HEAD", "PUT", "DELETE"]
    assert flaky_proxy.requests[1].startswith(f"PUT /{bucket}/team/runs/.mlcore-write-check/")
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket)


def test_a_missing_bucket(aws_env: str) -> None:
    with pytest.raises(StorageError) as caught:
        check_store("s3://mlcore-no-such-bucket/runs")
    assert "bucket 'mlcore-no-such-bucket' does not exist" in caught.value.message
    assert "create the bucket" in caught.value.fix


def test_credentials_that_are_refused(bucket: str, flaky_proxy: FlakyProxy) -> None:
    flaky_proxy.fail(1, status=403, code="InvalidAccessKeyId")  # what S3 answers an unknown key (moto accepts any)
    # a HEAD answer carries no error body: S3 says just 403, as it does for a real unknown key
    with pytest.raises(StorageError, match=r"check bucket: access denied \(403\)") as caught:
        S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=FAST).probe()
    assert "AWS_ACCESS_KEY_ID" in caught.value.fix


def test_credentials_that_may_read_but_not_write(bucket: str, flaky_proxy: FlakyProxy) -> None:
    flaky_proxy.fail(1, after=1, status=403, code="AccessDenied")
    with pytest.raises(StorageError, match=r"write check: access denied \(AccessDenied\)") as caught:
        S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=FAST).probe()
    assert "s3:PutObject" in caught.value.fix and caught.value.where.startswith(f"s3://{bucket}/runs/.mlcore-write")


def test_no_credentials_at_all(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no usable AWS credentials"):
        S3Store(bucket, "runs", retry=FAST).probe()


def test_an_endpoint_that_does_not_answer_is_reported_within_the_probe_window(aws_env: str,
                                                                              fake_clock: FakeClock) -> None:
    with socket.socket() as sock:  # a port nothing listens on: connections refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    store = S3Store("mlcore-any", "runs", endpoint_url=closed, retry=FAST)

    with pytest.raises(StorageError) as caught:
        store.probe(window_s=1.0)

    assert sum(fake_clock.slept) == pytest.approx(1.0)  # the probe's window, not the store's longer one
    assert f"check bucket failed {len(fake_clock.slept) + 1} times over 1.0 s" in caught.value.message
    assert "EndpointConnectionError" in caught.value.message
    assert "AWS_ENDPOINT_URL" in caught.value.fix and closed not in str(caught.value)


def test_a_local_folder(tmp_path: Path) -> None:
    LocalStore(tmp_path / "runs").probe()
    assert (tmp_path / "runs").is_dir() and not list((tmp_path / "runs").iterdir())
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StorageError, match="cannot write to the store folder") as caught:
        check_store(store_target(str(tmp_path / "file" / "runs")))
    assert caught.value.where == str(tmp_path / "file" / "runs")
