"""The one input pipeline every engine shares: mlcore's YOLO letterbox (pixel-exact with ultralytics' LetterBox)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlcore.config.schemas.data import PreprocessingConfig
from mlcore.preprocess import Preprocessed, SingleModelPreprocessor, for_model
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb


def letterbox_preprocessor(imgsz: int,
                           preprocessing: PreprocessingConfig | Mapping[str, Any] | None = None
                           ) -> SingleModelPreprocessor:
    """Letterbox to imgsz x imgsz, grey padding; other fields from `preprocessing` (schema defaults when None)."""
    if isinstance(preprocessing, PreprocessingConfig):
        preprocessing = preprocessing.model_dump()
    yolo = dict((preprocessing or {}).get("yolo", {}))
    yolo.update(strategy="letterbox", longest_edge=imgsz, pad_to=(imgsz, imgsz))
    return for_model("yolo", {"yolo": yolo})


def letterbox_images(images: ImageInput | Sequence[ImageInput], imgsz: int) -> Preprocessed | None:
    """One image or a list -> a (B, 3, imgsz, imgsz) batch and B metas; None for an empty list."""
    rgbs = [load_rgb(image) for image in (images if is_batch(images) else [images])]
    if not rgbs:
        return None
    return letterbox_preprocessor(imgsz)(rgbs)
