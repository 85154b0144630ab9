"""Shared test set-up: keep every tool's caches and settings inside the test's temp dirs, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

# Offline settings for the libraries the pipeline uses (see ../shared/ENGINEERING.md).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# flows/__init__.py sets this too, but it only counts if set before Prefect is first imported.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mlcore")


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared sample datasets not present at {SHARED_DATASETS}")
    return SHARED_DATASETS
