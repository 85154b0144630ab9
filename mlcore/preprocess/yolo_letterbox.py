"""The YOLO letterbox on the hot path of inference: numpy and cv2 only, written straight into a float32 batch array.

`SingleModelPreprocessor` (strategy letterbox) and `YoloLetterbox` give the same numbers, bit for bit: the same size
rule (`letterbox_placement`), the same cv2 INTER_LINEAR resize, the same float32 `(x - mean) / std` and the same
float32 pad fill. The difference is the route: the general preprocessor goes through torch tensors (a convert, a
normalise and a pad, each a full-size tensor); this one resizes with cv2 and divides each colour plane once into its
place in the output array, whose padding strips are filled directly. No torch op runs here, so no torch thread pool
wakes up beside a runtime's own threads (on a 2-core machine with ONNX Runtime spinning, the torch route cost tens of
milliseconds per image; this one well under one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import torch

from mlcore.config.schemas.data import ImagePreprocessing, PreprocessingConfig
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb
from mlcore.preprocess.meta import PreprocessMeta
from mlcore.preprocess.resize import letterbox_placement
from mlcore.preprocess.single import Preprocessed, SingleModelPreprocessor, for_model


class YoloLetterbox:
    """Letterbox (H, W, 3) uint8 RGB images into a (B, 3, S, S) float32 array, with each image's meta.

    config: an ImagePreprocessing with strategy "letterbox" (pad_to is the canvas). Pass `out` to reuse an array
    across calls (at least B images, C-contiguous, float32); without it a new array is returned.
    """

    def __init__(self, config: ImagePreprocessing) -> None:
        if config.strategy != "letterbox" or config.pad_to is None:
            raise ValueError(f"YoloLetterbox needs strategy 'letterbox' with pad_to, got {config.strategy!r}")
        self.config = config
        self.canvas = (int(config.pad_to[0]), int(config.pad_to[1]))
        # The constants exactly as SingleModelPreprocessor computes them (float32 tensors): results agree bit for bit.
        mean = torch.tensor(config.mean, dtype=torch.float32) * (1.0 / config.rescale_factor)
        std = torch.tensor(config.std, dtype=torch.float32) * (1.0 / config.rescale_factor)
        self._mean = mean.numpy().astype(np.float32)
        self._std = std.numpy().astype(np.float32)
        self._subtract = bool(np.any(self._mean != 0))  # x - 0 is x: skip a pass over the image
        self._pad_fill = np.float32(config.pad_value * config.rescale_factor)  # what F.pad casts its value to

    def __repr__(self) -> str:
        return f"YoloLetterbox(canvas={self.canvas}, longest_edge={self.config.longest_edge})"

    def plan(self, height: int, width: int) -> PreprocessMeta:
        placement = letterbox_placement(height, width, self.canvas, self.config.longest_edge)
        return PreprocessMeta.build((height, width), placement.resized_size, placement.pad)

    def __call__(self, rgbs: Sequence[np.ndarray], out: np.ndarray | None = None
                 ) -> tuple[np.ndarray, list[PreprocessMeta]]:
        """(B, 3, S, S) float32 (a view of `out` when given) and B metas."""
        height, width = self.canvas
        if out is None:
            out = np.empty((len(rgbs), 3, height, width), dtype=np.float32)
        elif out.dtype != np.float32 or out.shape[1:] != (3, height, width) or out.shape[0] < len(rgbs) \
                or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 (>= {len(rgbs)}, 3, {height}, {width}) array, "
                             f"got {out.dtype} {out.shape}")
        batch = out[:len(rgbs)]
        metas = [self.into(rgb, batch[index]) for index, rgb in enumerate(rgbs)]
        return batch, metas

    def into(self, rgb: np.ndarray, out: np.ndarray) -> PreprocessMeta:
        """Letterbox one image into `out` ((3, S, S) float32, written whole); its meta."""
        meta = self.plan(*rgb.shape[:2])
        (rh, rw), (left, top, _, _) = meta.resized_size, meta.pad
        if rgb.shape[:2] != (rh, rw):
            rgb = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
        fill = self._pad_fill
        out[:, :top] = fill
        out[:, top + rh:] = fill
        out[:, top:top + rh, :left] = fill
        out[:, top:top + rh, left + rw:] = fill
        for channel, plane in enumerate(cv2.split(np.ascontiguousarray(rgb))):  # contiguous planes: faster divides
            target = out[channel, top:top + rh, left:left + rw]
            if self._subtract:
                np.subtract(plane, self._mean[channel], out=target)
                np.divide(target, self._std[channel], out=target)
            else:
                np.divide(plane, self._std[channel], out=target)
        return meta


def letterbox_preprocessor(imgsz: int,
                           preprocessing: PreprocessingConfig | Mapping[str, Any] | None = None
                           ) -> SingleModelPreprocessor:
    """Letterbox to imgsz x imgsz, grey padding; other fields from `preprocessing` (schema defaults when None)."""
    if isinstance(preprocessing, PreprocessingConfig):
        preprocessing = preprocessing.model_dump()
    yolo = dict((preprocessing or {}).get("yolo", {}))
    yolo.update(strategy="letterbox", longest_edge=imgsz, pad_to=(imgsz, imgsz))
    return for_model("yolo", {"yolo": yolo})


@lru_cache(maxsize=8)
def yolo_letterbox(imgsz: int) -> YoloLetterbox:
    """The default YOLO letterbox to imgsz x imgsz (what `letterbox_preprocessor(imgsz)` does), numpy and cv2 only."""
    return YoloLetterbox(letterbox_preprocessor(imgsz).config)


def letterbox_images(images: ImageInput | Sequence[ImageInput], imgsz: int) -> Preprocessed | None:
    """One image or a list -> a (B, 3, imgsz, imgsz) batch and B metas; None for an empty list."""
    rgbs = [load_rgb(image) for image in (images if is_batch(images) else [images])]
    if not rgbs:
        return None
    pixels, metas = yolo_letterbox(imgsz)(rgbs)
    return Preprocessed(torch.from_numpy(pixels), metas)
