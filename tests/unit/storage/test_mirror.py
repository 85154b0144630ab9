"""mirror_coco_dataset against a real S3 endpoint on loopback (moto's server), failures injected by a proxy."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import boto3
import pytest

from mlcore.data.demo import make_demo_dataset
from mlcore.data.prepare import prepare_dataset
from mlcore.errors import DatasetError
from mlcore.storage import S3Store, StorageError
from mlcore.storage.mirror import INDEX_NAME, mirror_coco_dataset
from mlcore.storage.retry import RetryPolicy
from mlcore.storage.s3_client import make_s3_client
from tests.unit.storage.conftest import DUMMY_KEY_ID, DUMMY_SECRET, FlakyProxy

IMAGES = 6
FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.05, max_delay_s=0.2, botocore_attempts=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A generated COCO dataset: annotations.json and images/shapes_*.jpg."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=IMAGES, negatives=1, seed=4).parent


def upload(bucket: str, folder: Path, prefix: str, *, images_prefix: str | None = None) -> None:
    """FOLDER's files as a user's tools would put them in S3 (no sha256 metadata); images under IMAGES_PREFIX when
    given."""
    client = boto3.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            relative = path.relative_to(folder).as_posix()
            if images_prefix and relative.startswith("images/"):
                key = f"{images_prefix}/{relative.removeprefix('images/')}"
            else:
                key = f"{prefix}/{relative}"
            client.upload_file(str(path), bucket, key)


def count_gets(client) -> list[int]:
    """One entry per object CLIENT downloads from now on."""
    fetched: list[int] = []
    client.meta.events.register("before-call.s3.GetObject", lambda **_: fetched.append(1))
    return fetched


def test_a_dataset_is_mirrored_verified_and_usable(bucket, demo, tmp_path) -> None:
    upload(bucket, demo, "team/demo")
    client = make_s3_client()
    fetched = count_gets(client)

    mirrored = mirror_coco_dataset(f"s3://{bucket}/team/demo/annotations.json", tmp_path / "source", client=client,
                                   progress=False)

    # Laid out as in the bucket; the images found under images/ beside the JSON, as a local dataset's would be.
    assert mirrored.annotations == tmp_path / "source" / bucket / "team/demo/annotations.json"
    assert mirrored.images == tmp_path / "source" / bucket / "team/demo/images"
    assert mirrored.images_source == f"s3://{bucket}/team/demo/images"
    assert (mirrored.downloaded, mirrored.reused) == (IMAGES + 1, 0) and len(fetched) == IMAGES + 1
    assert mirrored.annotations.read_bytes() == (demo / "annotations.json").read_bytes()
    for image in (demo / "images").iterdir():
        assert (mirrored.images / image.name).read_bytes() == image.read_bytes()
    assert not list((tmp_path / "source").rglob("*.tmp"))
    report = prepare_dataset(mirrored.annotations, images_dir=mirrored.images, output_dir=tmp_path / "prepared",
                             progress=False)
    assert report.usable and report.statistics.images == IMAGES

    again = mirror_coco_dataset(f"s3://{bucket}/team/demo/annotations.json", tmp_path / "source", client=client,
                                progress=False)
    assert (again.downloaded, again.reused) == (0, IMAGES + 1) and len(fetched) == IMAGES + 1  # nothing fetched


def test_a_changed_object_and_a_touched_local_file_are_fetched_again(bucket, demo, tmp_path) -> None:
    upload(bucket, demo, "demo")
    url = f"s3://{bucket}/demo/annotations.json"
    first = mirror_coco_dataset(url, tmp_path / "source", progress=False)
    changed = os.urandom(500)
    boto3.client("s3").put_object(Bucket=bucket, Key="demo/images/shapes_0002.jpg", Body=changed)
    (first.images / "shapes_0003.jpg").write_bytes(b"edited by hand")

    second = mirror_coco_dataset(url, tmp_path / "source", progress=False)

    assert (second.downloaded, second.reused) == (2, IMAGES - 1)
    assert (second.images / "shapes_0002.jpg").read_bytes() == changed
    assert (second.images / "shapes_0003.jpg").read_bytes() == (demo / "images" / "shapes_0003.jpg").read_bytes()
    index = json.loads((tmp_path / "source" / INDEX_NAME).read_text())["objects"]
    assert len(index) == IMAGES + 1 and all(len(entry["sha256"]) == 64 for entry in index.values())


def test_an_explicit_image_prefix_wins(bucket, demo, tmp_path) -> None:
    upload(bucket, demo, "labels", images_prefix="pictures/shapes")
    # images/ beside the JSON holds one decoy with a listed name: the explicit prefix is still the one used
    boto3.client("s3").put_object(Bucket=bucket, Key="labels/images/shapes_0001.jpg", Body=b"decoy")

    mirrored = mirror_coco_dataset(f"s3://{bucket}/labels/annotations.json", tmp_path / "source",
                                   images=f"s3://{bucket}/pictures/shapes/", progress=False)

    assert mirrored.images == tmp_path / "source" / bucket / "pictures/shapes"
    assert (mirrored.images / "shapes_0001.jpg").read_bytes() == (demo / "images" / "shapes_0001.jpg").read_bytes()
    assert not (tmp_path / "source" / bucket / "labels" / "images").exists()


def test_coco_layout_finds_images_in_the_split_folder(bucket, demo, tmp_path) -> None:
    client = boto3.client("s3")
    client.upload_file(str(demo / "annotations.json"), bucket, "coco/annotations/instances_val2017.json")
    for image in (demo / "images").iterdir():
        client.upload_file(str(image), bucket, f"coco/val2017/{image.name}")

    mirrored = mirror_coco_dataset(f"s3://{bucket}/coco/annotations/instances_val2017.json", tmp_path / "source",
                                   progress=False)

    assert mirrored.images == tmp_path / "source" / bucket / "coco/val2017"
    assert len(list(mirrored.images.iterdir())) == IMAGES


def test_missing_images_are_named_with_their_urls_and_the_fix(bucket, demo, tmp_path) -> None:
    upload(bucket, demo, "demo")
    boto3.client("s3").delete_object(Bucket=bucket, Key="demo/images/shapes_0004.jpg")

    with pytest.raises(DatasetError) as caught:
        mirror_coco_dataset(f"s3://{bucket}/demo/annotations.json", tmp_path / "source", progress=False)

    error = caught.value
    assert f"1 of {IMAGES} images" in error.message
    assert f"s3://{bucket}/demo/images/shapes_0004.jpg" in error.message
    assert error.where == f"s3://{bucket}/demo/annotations.json" and "images=s3://" in error.fix
    assert not (tmp_path / "source" / bucket / "demo" / "images").exists()  # nothing fetched for a dataset that fails


def test_a_missing_annotation_file_or_bucket_is_a_clear_error(bucket, tmp_path) -> None:
    with pytest.raises(DatasetError, match="annotation file does not exist in S3") as caught:
        mirror_coco_dataset(f"s3://{bucket}/nowhere/annotations.json", tmp_path / "source", progress=False)
    assert caught.value.where == f"s3://{bucket}/nowhere/annotations.json"
    assert f"aws s3 ls s3://{bucket}/nowhere/" in caught.value.fix
    with pytest.raises(StorageError, match="bucket 'mlcore-no-such-bucket' does not exist"):
        mirror_coco_dataset("s3://mlcore-no-such-bucket/a.json", tmp_path / "source", progress=False)


def test_an_object_whose_bytes_differ_from_its_recorded_sha256_is_refused(bucket, demo, tmp_path) -> None:
    store = S3Store(bucket, "demo")
    store.put_file(demo / "annotations.json", "annotations.json")  # records x-amz-meta-sha256, as mlcore's store does
    for image in (demo / "images").iterdir():
        store.put_file(image, f"images/{image.name}")
    head = boto3.client("s3").head_object(Bucket=bucket, Key="demo/images/shapes_0005.jpg")
    boto3.client("s3").put_object(Bucket=bucket, Key="demo/images/shapes_0005.jpg", Body=b"damaged",
                                  Metadata=head["Metadata"])

    with pytest.raises(StorageError, match="do not match the sha256 it records") as caught:
        mirror_coco_dataset(f"s3://{bucket}/demo/annotations.json", tmp_path / "source", progress=False)

    assert caught.value.where == f"s3://{bucket}/demo/images/shapes_0005.jpg"
    images = tmp_path / "source" / bucket / "demo" / "images"
    assert not (images / "shapes_0005.jpg").exists() and not list(images.glob(".*.tmp"))
    # What did arrive is remembered: the rerun after a fix fetches only the repaired image.
    store.put_file(demo / "images" / "shapes_0005.jpg", "images/shapes_0005.jpg")
    rerun = mirror_coco_dataset(f"s3://{bucket}/demo/annotations.json", tmp_path / "source", progress=False)
    assert rerun.downloaded == 1 and rerun.reused == IMAGES


def test_transient_failures_are_survived(bucket, demo, tmp_path, flaky_proxy: FlakyProxy, caplog) -> None:
    upload(bucket, demo, "demo")
    client = make_s3_client(endpoint_url=flaky_proxy.url, retry=FAST_RETRY)
    flaky_proxy.fail(1, after=1, status=503, code="SlowDown")  # the annotation file's download
    flaky_proxy.fail(1, after=4, status=None)  # a dropped connection among the image look-ups and downloads
    flaky_proxy.fail(1, after=10, status=500, code="InternalError")

    with caplog.at_level(logging.WARNING, logger="mlcore"):
        mirrored = mirror_coco_dataset(f"s3://{bucket}/demo/annotations.json", tmp_path / "source", client=client,
                                       retry=FAST_RETRY, workers=4, progress=False)

    assert len(flaky_proxy.failed) == 3
    assert mirrored.downloaded == IMAGES + 1
    for image in (demo / "images").iterdir():
        assert (mirrored.images / image.name).read_bytes() == image.read_bytes()
    assert "trying again" in caplog.text
    for secret in (flaky_proxy.url, DUMMY_KEY_ID, DUMMY_SECRET):
        assert secret not in caplog.text


def test_a_local_json_with_images_in_s3(bucket, demo, tmp_path) -> None:
    upload(bucket, demo, "demo")
    mirrored = mirror_coco_dataset(demo / "annotations.json", tmp_path / "source",
                                   images=f"s3://{bucket}/demo/images", progress=False)
    assert mirrored.annotations == demo / "annotations.json"  # read where it is, never copied or changed
    assert mirrored.images == tmp_path / "source" / bucket / "demo/images" and mirrored.downloaded == IMAGES
