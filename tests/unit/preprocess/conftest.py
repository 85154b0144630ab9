from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTO = Path("coco128_coco/train2017/000000000110.jpg")


def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Uniform noise: every pixel differs from its neighbours, so any resampling difference shows."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def photo_path(shared_datasets: Path) -> Path:
    """A real COCO photo (480x640 JPEG), from the shared sample datasets."""
    path = shared_datasets / PHOTO
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def photo(photo_path: Path) -> np.ndarray:
    return np.array(Image.open(photo_path).convert("RGB"))
