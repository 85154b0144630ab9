"""open_store: what `--store` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.storage import DEFAULT_LOCAL_ROOT, LocalStore, S3Store, StorageError, open_store


def test_default_is_the_local_runs_folder() -> None:
    store = open_store(None)
    assert isinstance(store, LocalStore) and store.root == DEFAULT_LOCAL_ROOT == Path("data/runs")


def test_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert open_store(tmp_path).url == str(tmp_path)
    assert open_store(f"file://{tmp_path}").url == str(tmp_path)
    s3 = open_store("s3://team-bucket/mlcore/runs/")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("team-bucket", "mlcore/runs")
    assert s3.url_for("run1/a.pt") == "s3://team-bucket/mlcore/runs/run1/a.pt"
    assert open_store("s3://team-bucket").url == "s3://team-bucket"
    with pytest.raises(StorageError, match="no bucket"):
        open_store("s3:///prefix")
    with pytest.raises(StorageError, match="unsupported store"):
        open_store("gs://bucket/prefix")
