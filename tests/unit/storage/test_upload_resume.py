"""Resumable upload: what is already in the store with the same sha256 is not sent again."""

from __future__ import annotations

import os
from pathlib import Path

import boto3

from mlcore.storage import LocalStore, S3Store, upload_files
from tests.unit.storage.conftest import FlakyProxy


def _files(root: Path, count: int = 5) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for index in range(count):
        path = root / f"file{index}.bin"
        path.write_bytes(os.urandom(1000 + index))
        files[f"run1/sub/file{index}.bin"] = path
    return files


def _requests(proxy: FlakyProxy, method: str) -> list[str]:
    return [line for line in proxy.requests if line.startswith(method + " ")]


def test_a_fresh_upload_lists_once_and_sends_everything(bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url)
    result = upload_files(store, _files(tmp_path), folder="run1")

    assert sorted(result.sent) == sorted(result.stored) and not result.skipped
    # one listing; no lookup before any PUT (each PUT is followed by its own read-back HEAD)
    assert len(_requests(flaky_proxy, "GET")) == 1 and len(_requests(flaky_proxy, "PUT")) == 5
    assert len(_requests(flaky_proxy, "HEAD")) == 5


def test_an_interrupted_upload_resumes_without_sending_what_arrived(
        bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url)
    files = _files(tmp_path)
    first = dict(list(files.items())[:3])
    upload_files(store, first, folder="run1")  # as far as an earlier try got
    files["run1/sub/file1.bin"].write_bytes(b"changed since")  # a file that changed is sent again
    boto3.client("s3").put_object(Bucket=bucket, Key="runs/run1/sub/file2.bin", Body=files["run1/sub/file2.bin"]
                                  .read_bytes())  # same bytes, but no sha256 recorded: not vouched for, sent again
    before = len(flaky_proxy.requests)

    result = upload_files(store, files, folder="run1")

    assert result.skipped == ["run1/sub/file0.bin"]
    assert sorted(result.sent) == ["run1/sub/file1.bin", "run1/sub/file2.bin", "run1/sub/file3.bin",
                                   "run1/sub/file4.bin"]
    sent = [line.split(" ", 1)[1] for line in flaky_proxy.requests[before:] if line.startswith("PUT ")]
    assert not [path for path in sent if path.endswith("file0.bin")]
    for key, path in files.items():
        assert store.compute_sha256(key) == result.stored[key]
        assert result.stored[key].size == path.stat().st_size


def test_a_local_folder_resumes_too(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    files = _files(tmp_path / "out")
    assert len(upload_files(store, files, folder="run1").sent) == 5
    again = upload_files(store, files, folder="run1")
    assert not again.sent and len(again.skipped) == 5
