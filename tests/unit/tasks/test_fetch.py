"""fetch-dataset: the pipeline's s3:// dataset parameters become a local copy; which failures Prefect retries."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from mlcore.data.demo import make_demo_dataset
from mlcore.storage.retry import RetryPolicy
from tasks.aws import S3Unreachable
from tasks.fetch import fetch_dataset_task, needs_fetch
from tasks.policy import retry_transient
from tests.unit.storage.conftest import DUMMY_SECRET, FlakyProxy

IMAGES = 6


@pytest.fixture
def demo_in_s3(bucket: str, tmp_path: Path) -> str:
    """The demo dataset under s3://BUCKET/demo/ (annotations.json, val.json, images/), as a user uploads it."""
    source = make_demo_dataset(tmp_path / "demo", num_images=IMAGES, negatives=0, seed=5)
    client = boto3.client("s3")
    client.upload_file(str(source), bucket, "demo/annotations.json")
    client.upload_file(str(source), bucket, "demo/val.json")
    for image in sorted((source.parent / "images").iterdir()):
        client.upload_file(str(image), bucket, f"demo/images/{image.name}")
    return f"s3://{bucket}/demo"


def test_only_s3_parameters_need_a_fetch() -> None:
    assert needs_fetch("s3://team/a.json", None) and needs_fetch("/data/a.json", "S3://team/images")
    assert not needs_fetch("/data/a.json", None, "data/val.json") and not needs_fetch(None)


def test_s3_parameters_are_replaced_by_their_local_copy(demo_in_s3: str, tmp_path: Path) -> None:
    local_test = tmp_path / "test.json"
    local_test.write_text("{}")

    fetched = fetch_dataset_task.fn(f"{demo_in_s3}/annotations.json", str(tmp_path / "source"),
                                    val=f"{demo_in_s3}/val.json", test=str(local_test))

    bucket = demo_in_s3.removeprefix("s3://").split("/")[0]
    root = tmp_path / "source" / bucket / "demo"
    assert (fetched.data, fetched.images, fetched.val) == (str(root / "annotations.json"), str(root / "images"),
                                                           str(root / "val.json"))
    assert fetched.test == str(local_test)  # a local file is used where it is
    assert fetched.sources == {"data": f"{demo_in_s3}/annotations.json", "val": f"{demo_in_s3}/val.json"}
    # val.json names the same images: they are fetched once
    assert (fetched.downloaded, fetched.reused) == (IMAGES + 2, IMAGES)
    assert len(list(Path(fetched.images).iterdir())) == IMAGES


def test_a_missing_object_fails_the_task_at_once(bucket: str, tmp_path: Path) -> None:
    state = fetch_dataset_task.fn(f"s3://{bucket}/gone/annotations.json", str(tmp_path / "source"))

    assert state.is_failed() and f"s3://{bucket}/gone/annotations.json" in state.message
    assert "does not exist" in state.message and "fix:" in state.message
    assert not retry_transient(fetch_dataset_task, None, state)
    assert fetch_dataset_task.retry_condition_fn is retry_transient and fetch_dataset_task.timeout_seconds


def test_an_endpoint_that_stays_down_is_raised_for_prefect_to_retry(
        demo_in_s3: str, tmp_path: Path, flaky_proxy: FlakyProxy, monkeypatch) -> None:
    fast = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02, botocore_attempts=1)
    monkeypatch.setattr("mlcore.storage.mirror.RetryPolicy", lambda: fast)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_proxy.url)
    flaky_proxy.fail(100, status=503, code="ServiceUnavailable")

    with pytest.raises(S3Unreachable) as caught:
        fetch_dataset_task.fn(f"{demo_in_s3}/annotations.json", str(tmp_path / "source"))

    assert retry_transient(fetch_dataset_task, None, SimpleNamespace(data=caught.value))
    message = str(caught.value)
    assert "failed 2 times" in message and f"{demo_in_s3}/annotations.json" in message
    assert flaky_proxy.url not in message and "127.0.0.1" not in message and DUMMY_SECRET not in message
