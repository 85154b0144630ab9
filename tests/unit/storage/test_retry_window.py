"""Riding out outages: capped exponential backoff over a time window, and no upload sent twice, against a real S3
endpoint on loopback (moto's server) behind a proxy that fails on purpose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlcore.storage import S3Store, StorageError
from mlcore.storage.retry import RetryPolicy
from tests.unit.storage.conftest import FakeClock, FlakyProxy


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _window(seconds: float) -> RetryPolicy:
    return RetryPolicy.for_outages(seconds / 60, base_delay_s=0.05, max_delay_s=0.2, botocore_attempts=1)


def test_waits_double_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy.for_outages(10, base_delay_s=1, max_delay_s=30)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (60, 30)]:
        waits = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10  # jittered, so clients that failed together spread out


def test_the_window_bounds_the_tries_and_its_end_gets_one_more() -> None:
    policy = RetryPolicy.for_outages(1, base_delay_s=1, max_delay_s=30)
    assert policy.attempts is None and policy.window_s == 60
    assert policy.wait_before_next(100, failing_for=59.5) == pytest.approx(0.5)  # the last wait ends with the window
    assert policy.wait_before_next(3, failing_for=60) is None
    assert RetryPolicy(attempts=3).wait_before_next(3, failing_for=0) is None  # the old bound still works
    assert RetryPolicy(attempts=2, window_s=5).wait_before_next(2, failing_for=1) is None  # whichever comes first
    with pytest.raises(ValueError, match="retry forever"):
        RetryPolicy(attempts=None)


def test_an_outage_shorter_than_the_window_is_ridden_out(bucket: str, tmp_path: Path,
                                                          flaky_proxy: FlakyProxy) -> None:
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=_window(20))
    flaky_proxy.fail(25, status=503, code="ServiceUnavailable")  # more tries than the old 3-attempt limit allowed

    stored = store.put_file(_write(tmp_path / "a.bin", os.urandom(2000)), "run1/a.bin")

    assert len(flaky_proxy.failed) == 25
    assert store.compute_sha256("run1/a.bin") == stored


def test_an_outage_longer_than_the_window_gives_up_saying_how_long(bucket: str, tmp_path: Path,
                                                                    flaky_proxy: FlakyProxy,
                                                                    fake_clock: FakeClock) -> None:
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=_window(1.0))
    flaky_proxy.fail(10_000, status=None)  # every connection dropped without an answer

    with pytest.raises(StorageError) as caught:
        store.put_file(_write(tmp_path / "a.bin", b"x"), "run1/a.bin")

    # It kept trying for the whole window, no longer: the last wait ends with the window, then one more try.
    assert sum(fake_clock.slept) == pytest.approx(1.0) and all(wait <= 0.2 for wait in fake_clock.slept)
    tries = len(fake_clock.slept) + 1
    assert f"upload failed {tries} times over 1.0 s" in caught.value.message
    assert len(flaky_proxy.failed) >= tries  # every try reached the endpoint
    assert "AWS_ENDPOINT_URL" in caught.value.fix and flaky_proxy.url not in str(caught.value)


def test_an_upload_that_landed_is_not_sent_again_when_only_its_check_failed(
        bucket: str, tmp_path: Path, flaky_proxy: FlakyProxy) -> None:
    store = S3Store(bucket, "runs", endpoint_url=flaky_proxy.url, retry=_window(20))
    flaky_proxy.fail(2, after=1, status=503, code="SlowDown")  # the PUT goes through; its read-back fails twice

    stored = store.put_file(_write(tmp_path / "a.bin", os.urandom(2000)), "run1/a.bin")

    puts = [line for line in flaky_proxy.requests if line.startswith("PUT ")]
    assert len(puts) == 1, flaky_proxy.requests
    assert store.lookup("run1/a.bin") == stored


def test_lookup_and_delete(bucket: str, tmp_path: Path) -> None:
    import boto3

    store = S3Store(bucket, "runs")
    stored = store.put_file(_write(tmp_path / "a.bin", b"abc"), "run1/a.bin")
    assert store.lookup("run1/a.bin") == stored and store.lookup("run1/none.bin") is None
    boto3.client("s3").put_object(Bucket=bucket, Key="runs/run1/other.bin", Body=b"abc")  # no sha256 recorded
    assert store.lookup("run1/other.bin") is None  # nothing mlcore can vouch for: an upload sends it again

    store.delete("run1/a.bin")
    store.delete("run1/a.bin")  # nothing there is not an error
    assert not store.exists("run1/a.bin")
