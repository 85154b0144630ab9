"""Calibration data for static INT8: N images, chosen with a seed, letterboxed exactly as at inference.

Activation ranges measured on differently preprocessed pixels (another resize, no grey padding) would be the ranges of
inputs the model never sees; so the reader runs mlcore's YOLO preprocessor, the one every engine uses.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.errors import DatasetError
from mlcore.logs import get_logger
from mlcore.preprocess import for_model

log = get_logger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def calibration_images(source: str | os.PathLike[str], num_images: int, *, seed: int = 0,
                       images_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """A seeded choice of up to num_images image files from a folder (recursively) or a COCO file's images.

    images_dir: where a COCO file's images live (default: found next to the file, as the datasets do).
    """
    source = Path(source)
    if source.is_dir():
        candidates = sorted(path for path in source.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES
                            and path.is_file())
    elif source.is_file() and source.suffix.lower() == ".json":
        from mlcore.data.coco_dataset import CocoDataset

        dataset = CocoDataset(source, images_dir)
        candidates = [dataset.images_root / image.file_name for image in dataset.images]
        candidates = [path for path in candidates if path.is_file()]
    else:
        raise DatasetError("calibration data not found", where=str(source),
                           fix="give a folder of training images or a COCO .json whose images exist "
                               "(calibration.data in quantization.yaml, or --calib-data)")
    if not candidates:
        raise DatasetError("no calibration images found", where=str(source),
                           fix=f"put training images ({', '.join(IMAGE_SUFFIXES)}) there, or point to another "
                               "folder / COCO file")
    chosen = random.Random(seed).sample(candidates, min(num_images, len(candidates)))
    if len(chosen) < num_images:
        log.warning("calibrating on %d images (%d asked for): that is all %s holds", len(chosen), num_images, source)
    return chosen


def _calibration_reader_base() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class CalibrationReader(_calibration_reader_base()):  # type: ignore[misc]
    """onnxruntime.quantization.CalibrationDataReader over letterboxed images.

    Feeds {input_name: (B, 3, imgsz, imgsz) float32} with B the model's batch size when fixed, else 1. `rewind()`
    starts over (ONNX Runtime reads the data once per pass; entropy / percentile read it again).
    """

    def __init__(self, images: Sequence[str | os.PathLike[str]], *, imgsz: int, input_name: str = "images",
                 batch_size: int = 1) -> None:
        super().__init__()
        if not images:
            raise DatasetError("no calibration images given", where="calibration",
                               fix="give a folder of training images or a COCO file")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images = [Path(image) for image in images]
        self.imgsz = imgsz
        self.input_name = input_name
        self.batch_size = batch_size
        self._preprocess = for_model("yolo", {"yolo": {"strategy": "letterbox", "longest_edge": imgsz,
                                                       "pad_to": [imgsz, imgsz]}})
        self._batches: Iterator[dict[str, np.ndarray]] = iter(())
        self.rewind()

    @classmethod
    def from_source(cls, source: str | os.PathLike[str], *, imgsz: int, num_images: int = 100, seed: int = 0,
                    input_name: str = "images", batch_size: int = 1,
                    images_dir: str | os.PathLike[str] | None = None) -> CalibrationReader:
        """Images chosen from a folder or a COCO file (see `calibration_images`)."""
        return cls(calibration_images(source, num_images, seed=seed, images_dir=images_dir), imgsz=imgsz,
                   input_name=input_name, batch_size=batch_size)

    @classmethod
    def for_model(cls, model_path: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]], *,
                  imgsz: int | None = None) -> CalibrationReader:
        """A reader shaped for this ONNX model: its input name, its fixed batch size (1 when variable), its imgsz."""
        import onnx

        from mlcore.optimization.onnx_export import check_single_image_input

        model = onnx.load(str(model_path), load_external_data=False)
        image_input = check_single_image_input(model, where=str(model_path))
        dims = image_input.type.tensor_type.shape.dim
        batch = dims[0].dim_value if dims[0].HasField("dim_value") else 1
        if imgsz is None:
            imgsz = dims[2].dim_value if dims[2].HasField("dim_value") else None
        if not imgsz:
            raise DatasetError("cannot tell the model's input size", where=str(model_path),
                               fix="pass imgsz (the size the student was exported at)")
        return cls(images, imgsz=imgsz, input_name=image_input.name, batch_size=max(batch, 1))

    def __len__(self) -> int:
        """Number of batches per pass (a last partial batch is dropped when the batch is fixed above 1)."""
        return max(len(self.images) // self.batch_size, 1 if self.batch_size == 1 else 0)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._generate()

    def _generate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images) - self.batch_size + 1, self.batch_size):
            batch = self._preprocess([str(path) for path in self.images[start:start + self.batch_size]])
            yield {self.input_name: np.ascontiguousarray(batch.pixel_values.numpy(), dtype=np.float32)}


__all__ = ["IMAGE_SUFFIXES", "CalibrationReader", "calibration_images"]
