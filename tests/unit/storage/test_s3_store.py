"""S3Store against a real S3 HTTP endpoint on loopback (moto's server), with failures injected by a proxy."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from mlcore.storage import Lineage, S3Store, StorageError, open_store, verify_manifest, write_manifest
from mlcore.storage.s3 import RetryPolicy
from tests.unit.storage.conftest import DUMMY_KEY_ID, DUMMY_SECRET, FakeClock, FlakyProxy

MiB = 1024 * 1024
FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.05, max_delay_s=0.2, botocore_attempts=1)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _make_outputs(root: Path) -> Path:
    _write(root / "student" / "best.pt", os.urandom(3000))
    _write(root / "exports" / "student.onnx", os.urandom(2000))
    _write(root / "report.md", b"# report\n")
    return root


def _via(proxy: FlakyProxy, bucket: str, prefix: str = "runs", **options) -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=proxy.url, **options)


def test_file_round_trip_records_size_and_sha256(bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/team/runs")
    assert isinstance(store, S3Store) and store.url == f"s3://{bucket}/team/runs"
    source = _write(tmp_path / "model.pt", os.urandom(5000))
    sent: list[dict] = []
    store.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))

    stored = store.put_file(source, "run1/student/model.pt")

    assert stored.size == 5000 and len(stored.sha256) == 64
    assert store.exists("run1/student/model.pt") and not store.exists("run1/student/other.pt")
    assert store.stat("run1/student/model.pt") == stored
    assert store.compute_sha256("run1/student/model.pt") == stored
    head = boto3.client("s3").head_object(Bucket=bucket, Key="team/runs/run1/student/model.pt")
    assert head["Metadata"]["sha256"] == stored.sha256
    # The file's own sha256 goes with the PUT: S3 refuses the object unless the bytes it got hash to it.
    # (moto stores but does not check it, so here the read-back of size and metadata is what is exercised.)
    assert sent[0]["x-amz-checksum-sha256"].decode() == _b64(stored.sha256)
    fetched = store.get_file("run1/student/model.pt", tmp_path / "back" / "model.pt")
    assert fetched.read_bytes() == source.read_bytes()


def test_directory_round_trip(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket, "runs")
    outputs = _make_outputs(tmp_path / "outputs")

    stored = store.put_dir(outputs, "run1")

    assert [item.key for item in stored] == ["run1/exports/student.onnx", "run1/report.md", "run1/student/best.pt"]
    assert store.list("run1") == [item.key for item in stored]
    assert store.list("run") == []  # a prefix is a folder, not a string prefix
    store.get_dir("run1", tmp_path / "back")
    for item in stored:
        relative = item.key.removeprefix("run1/")
        assert (tmp_path / "back" / relative).read_bytes() == (outputs / relative).read_bytes()


def test_large_file_goes_up_in_parts(bucket: str, tmp_path: Path) -> None:
    small_parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    store = S3Store(bucket, "runs", transfer_config=small_parts)
    source = _write(tmp_path / "big.bin", os.urandom(11 * MiB))

    stored = store.put_file(source, "run1/big.bin")

    etag = boto3.client("s3").head_object(Bucket=bucket, Key="runs/run1/big.bin")["ETag"].strip('"')
    assert etag.endswith("-3"), etag  # three parts: 5 + 5 + 1 MiB
    assert store.get_file("run1/big.bin", tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert store.compute_sha256("run1/big.bin") == stored


def test_manifest_verifies_and_detects_a_tampered_object(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket, "runs")
    stored = store.put_dir(_make_outputs(tmp_path / "outputs"), "run1")
    by_key = {item.key.removeprefix("run1/"): item.sha256 for item in stored}
    lineage = Lineage(
        dataset_sha256="a" * 64,
        teacher_adapters={"grounding_dino": "b" * 64},
        student_sha256=by_key["student/best.pt"],
        exports={"student.onnx": by_key["exports/student.onnx"]},
    )

    write_manifest(store, "run1", stored, lineage)
    manifest = verify_manifest(store, "run1")

    assert [entry.key for entry in manifest.files] == sorted(by_key)
    text = store.read_bytes("run1/manifest.json").decode()
    assert json.loads(text)["lineage"]["student_sha256"] == by_key["student/best.pt"]
    # Nothing about where or how the store is reached goes into the manifest.
    for secret in (os.environ["AWS_ENDPOINT_URL"], "127.0.0.1", DUMMY_KEY_ID, DUMMY_SECRET, bucket):
        assert secret not in text

    # Same size, same recorded metadata, different bytes: only the content check can see it.
    head = boto3.client("s3").head_object(Bucket=bucket, Key="runs/run1/student/best.pt")
    boto3.client("s3").put_object(
        Bucket=bucket, Key="runs/run1/student/best.pt", Body=os.urandom(3000), Metadata=head["Metadata"]
    )
    verify_manifest(store, "run1", quick=True)  # metadata alone cannot see this
    with pytest.raises(StorageError, match=r"(?s)1 of 3 stored files.*student/best\.pt: sha256") as caught:
        verify_manifest(store, "run1")
    assert caught.value.fix and caught.value.where == f"s3://{bucket}/runs/run1/manifest.json"
    with pytest.raises(StorageError, match="does not match what was uploaded"):
        store.get_file("run1/student/best.pt", tmp_path / "fetched.pt")
    assert not (tmp_path / "fetched.pt").exists() and not list(tmp_path.glob(".fetched.pt.*"))


def test_transient_errors_are_retried_by_botocore(bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    store = _via(flaky_proxy, bucket, retry=RetryPolicy(attempts=1, botocore_attempts=4))
    flaky_proxy.fail(2, status=503, code="SlowDown")

    stored = store.put_file(_write(tmp_path / "a.bin", b"abc" * 1000), "run1/a.bin")

    assert len(flaky_proxy.failed) == 2
    assert store.compute_sha256("run1/a.bin") == stored


def test_a_whole_multipart_upload_is_retried(bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy, caplog) -> None:
    # botocore may not retry at all here; the store's own loop starts the whole upload again.
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=1)
    store = _via(flaky_proxy, bucket, retry=FAST_RETRY, transfer_config=parts)
    source = _write(tmp_path / "big.bin", os.urandom(11 * MiB))
    flaky_proxy.fail(1, after=2, status=None)  # create upload, part 1, then the connection drops on part 2
    flaky_proxy.fail(1, after=5, status=500, code="InternalError")  # and a 500 during the second try

    with caplog.at_level(logging.WARNING, logger="mlcore"):
        stored = store.put_file(source, "run1/big.bin")

    assert len(flaky_proxy.failed) == 2
    assert store.get_file("run1/big.bin", tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert stored.sha256 == store.stat("run1/big.bin").sha256
    assert "trying again" in caplog.text
    for secret in (flaky_proxy.url, "127.0.0.1", DUMMY_KEY_ID, DUMMY_SECRET):
        assert secret not in caplog.text


def test_retries_are_bounded(bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    store = _via(flaky_proxy, bucket, retry=FAST_RETRY)
    flaky_proxy.fail(100, status=503, code="ServiceUnavailable")

    # a try after the first asks first whether the previous one landed (HEAD): a HEAD's 503 has no error code
    with pytest.raises(StorageError, match=r"upload failed 4 times over [\d.]+ s; last error: (\w+ \()?HTTP 503"):
        store.put_file(_write(tmp_path / "a.bin", b"x"), "run1/a.bin")
    assert len(flaky_proxy.requests) == 4


def test_a_missing_bucket_fails_at_once_with_a_clear_error(
    aws_env: str, tmp_path: Path, flaky_proxy: FlakyProxy, fake_clock: FakeClock
) -> None:
    store = _via(flaky_proxy, "mlcore-no-such-bucket", retry=RetryPolicy(base_delay_s=5))
    source = _write(tmp_path / "a.bin", b"x")

    with pytest.raises(StorageError) as caught:
        store.put_file(source, "run1/a.bin")

    assert fake_clock.slept == [] and len(flaky_proxy.requests) == 1  # one request, no wait for a retry
    error = caught.value
    assert "bucket 'mlcore-no-such-bucket' does not exist" in error.message
    assert error.where == "s3://mlcore-no-such-bucket/runs/run1/a.bin" and "create the bucket" in error.fix
    assert error.__cause__ is None and error.__suppress_context__  # printed without a botocore traceback
    for lookup in (lambda: store.exists("run1/a.bin"), lambda: store.list("run1"), store.check):
        with pytest.raises(StorageError, match="does not exist"):
            lookup()


def test_bad_credentials_fail_at_once_with_a_clear_error(bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    # moto accepts any key, so the proxy answers the way S3 does for an unknown access key.
    store = _via(flaky_proxy, bucket, retry=RetryPolicy(base_delay_s=5))
    flaky_proxy.fail(1, status=403, code="InvalidAccessKeyId")

    with pytest.raises(StorageError, match=r"access denied \(InvalidAccessKeyId\)") as caught:
        store.put_file(_write(tmp_path / "a.bin", b"x"), "run1/a.bin")

    assert len(flaky_proxy.requests) == 1 and "AWS_ACCESS_KEY_ID" in caught.value.fix


def test_missing_key_is_a_clear_error(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket, "runs")
    assert not store.exists("run1/none.pt")
    with pytest.raises(StorageError, match="no artifact stored under this key"):
        store.get_file("run1/none.pt", tmp_path / "none.pt")
    assert not (tmp_path / "none.pt").exists()


def test_an_upload_that_reads_back_wrong_is_caught() -> None:
    from mlcore.storage.s3 import _upload_mismatch

    sha = "ab" * 32
    good = {"ContentLength": 5, "ETag": '"x"', "Metadata": {"sha256": sha}, "ChecksumSHA256": _b64(sha)}
    assert _upload_mismatch(good, sha, 5) is None
    assert "4 bytes" in _upload_mismatch({**good, "ContentLength": 4}, sha, 5)
    assert "recorded sha256" in _upload_mismatch({**good, "Metadata": {}}, sha, 5)
    assert "SHA256 checksum" in _upload_mismatch({**good, "ChecksumSHA256": _b64("cd" * 32)}, sha, 5)
    # A multipart object's checksum is one of part checksums: not comparable with the file's sha256.
    assert _upload_mismatch({**good, "ETag": '"x-3"', "ChecksumSHA256": _b64("cd" * 32) + "-3"}, sha, 5) is None


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
