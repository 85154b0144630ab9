"""Accepted image inputs (array, PIL image, path) turned into one form: an (H, W, 3) uint8 RGB array.

Files are decoded as stored, without applying EXIF orientation: COCO widths, heights and coordinates describe the
stored pixels (validation flags files whose EXIF rotation disagrees with the JSON).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcore.errors import DatasetError

ImageInput = Union[np.ndarray, Image.Image, str, os.PathLike]
_FIX_UNREADABLE = "replace the file with a valid image, or remove it from the dataset"


def is_batch(image_or_batch: ImageInput | Sequence[ImageInput]) -> bool:
    """A list or tuple is a batch; an array, PIL image or path is one image."""
    return isinstance(image_or_batch, (list, tuple))


def load_rgb(image: ImageInput) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Gray arrays are repeated to 3 channels; a 4th (alpha) channel is dropped."""
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        return _rgb_array(image)
    raise TypeError(f"an image must be an (H, W, 3) uint8 array, a PIL image or a path, not {type(image).__name__}")


def _read_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError("image file not found", where=str(path), fix="check the path and the images folder")
    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"image cannot be read: {exc}", where=str(path), fix=_FIX_UNREADABLE) from None
    except ImportError:
        # Importing ultralytics patches Image.open to retry unknown files with pi-heif; without it, this is raised.
        raise DatasetError("image cannot be read: not a known image format", where=str(path),
                           fix=_FIX_UNREADABLE) from None


def _rgb_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255), got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"image arrays must be (H, W, 3) RGB, got shape {array.shape}")
    return array[:, :, :3]
