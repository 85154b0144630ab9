"""`mlcore augment list | preview` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mlcore.augmentation.preview import grid_size
from tests.unit.relocated import relocate

MLCORE = [sys.executable, "-m", "mlcore.cli.app"]


def mlcore(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([*MLCORE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    result = mlcore("demo-data", "--output", str(folder), "--images", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    return folder / "annotations.json"


def test_list_prints_every_characteristic_and_environment_option():
    result = mlcore("augment", "list")
    assert result.returncode == 0, result.stderr
    for name in ("changes_shape", "partially_hidden", "reflective_surface", "CoarseDropout", "MotionBlur",
                 "lighting", "poor", "shaky", "busy", "close", "HorizontalFlip"):
        assert name in result.stdout, name


def test_preview_writes_the_grid_and_prints_the_pipeline(demo, tmp_path):
    output = tmp_path / "out" / "grid.png"
    result = mlcore("augment", "preview", "--data", str(demo), "--characteristics", "changes_size,partially_hidden",
                    "--lighting", "poor", "--camera", "shaky", "--intensity", "high", "--n", "6", "--seed", "0",
                    "--output", str(output))
    assert result.returncode == 0, result.stderr
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size == grid_size(6) == (3 * 256 + 4 * 4, 2 * 256 + 3 * 4)
    for text in ("Affine", "CoarseDropout", "GaussNoise", "MotionBlur", "characteristic:partially_hidden",
                 "masks carried", "2x3 tiles"):
        assert text in result.stdout, text


def test_preview_from_a_config_file_with_a_flag_override(demo, tmp_path):
    config = tmp_path / "augmentation.yaml"
    config.write_text("kind: augmentation\ncharacteristics: [low_contrast]\nenvironment: {background: changing}\n"
                      "intensity: low\nseed: 5\n")
    output = tmp_path / "grid.png"
    result = mlcore("augment", "preview", "--data", str(demo), "--config", str(config), "--intensity", "high",
                    "--mode", "detection_only", "--n", "4", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "CLAHE" in result.stdout and "background=changing" in result.stdout and "intensity: high" in result.stdout
    assert "masks not carried" in result.stdout
    with Image.open(output) as image:
        assert image.size == grid_size(4)


def test_unknown_characteristic_is_one_message_listing_the_valid_ones(demo, tmp_path):
    result = mlcore("augment", "preview", "--data", str(demo), "--characteristics", "shiny",
                    "--output", str(tmp_path / "g.png"))
    assert result.returncode == 2
    assert "unknown characteristic 'shiny'" in result.stderr and "reflective_surface" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    result = mlcore("augment", "preview", "--data", str(demo), "--lighting", "dim", "--output", str(tmp_path / "g.png"))
    assert result.returncode == 2 and "stable, variable, poor" in result.stderr


def test_a_config_with_an_unknown_name_fails_listing_the_valid_ones(demo, tmp_path):
    config = tmp_path / "augmentation.yaml"
    config.write_text("kind: augmentation\ncharacteristics: [shiny]\n")
    result = mlcore("augment", "preview", "--data", str(demo), "--config", str(config),
                    "--output", str(tmp_path / "g.png"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "characteristics[0]" in result.stderr and "'partially_hidden'" in result.stderr


def test_preview_of_a_file_moved_away_from_its_images_needs_images(demo, tmp_path):
    moved = relocate(demo, demo.parent / "images", tmp_path)
    output = tmp_path / "grid.png"
    failed = mlcore("augment", "preview", "--data", str(moved.annotations), "--n", "2", "--output", str(output))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert str(moved.annotations.parent) in failed.stderr and f"--images '{moved.images}'" in failed.stderr
    result = mlcore("augment", "preview", "--data", str(moved.annotations), "--images", str(moved.images), "--n", "2",
                    "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.is_file()
