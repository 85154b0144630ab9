"""Shared test set-up: keep every tool's caches and settings inside the test's temp dirs, offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

# Offline settings for the libraries the pipeline uses (see ../shared/ENGINEERING.md).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
# ultralytics writes its settings file on import, which may happen while tests are collected: keep it in a temp dir.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="mlcore-tests-ultralytics-"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# flows/__init__.py sets this too, but it only counts if set before Prefect is first imported.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mlcore")
# mlcore code the tests call outside any flow (verify_manifest, ...) logs locally instead of warning about the API.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared sample datasets not present at {SHARED_DATASETS}")
    return SHARED_DATASETS


DEMO_MODE = {"detection_only": "boxes", "segmentation_only": "masks", "detection_and_segmentation": "both"}


@pytest.fixture(scope="session")
def mode_config_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real .mode_config.json per annotation mode, written by the validate step from a small demo dataset."""
    from mlcore.data.demo import make_demo_dataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.data.prepare import prepare_dataset

    paths = {}
    for mode, demo_mode in DEMO_MODE.items():
        root = tmp_path_factory.mktemp(mode)
        source = make_demo_dataset(root / "demo", mode=demo_mode, num_images=4, negatives=0, seed=1)
        report = prepare_dataset(source, output_dir=root / "prepared", progress=False)
        paths[mode] = Path(report.outputs["mode_config"])
        assert ModeConfig.read(paths[mode]).annotation_mode == mode
    return paths
