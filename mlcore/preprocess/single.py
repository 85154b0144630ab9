"""One model's input pipeline: resize, normalise and pad an image (or a batch) exactly as that model's reference does.

Order of operations, as in the references: resize the uint8 pixels, rescale and normalise
(`(x - mean / rescale_factor) / (std / rescale_factor)`, transformers' fused form), then pad. The padded area holds
`pad_value * rescale_factor` and is not mean/std-normalised: 0 gives the zeros the transformers processors pad with
(Grounding DINO, SAM), 114 with rescale 1/255 gives ultralytics' grey (its mean is 0 and std 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mlcore.config.schemas.data import ImagePreprocessing, PreprocessingConfig
from mlcore.errors import ConfigError
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb
from mlcore.preprocess.meta import PreprocessMeta, stack_pixel_masks
from mlcore.preprocess.resize import place, resize_pixels

MODEL_NAMES = ("grounding_dino", "sam", "yolo")


class Preprocessed(NamedTuple):
    """What a model gets: (3, H, W) and one meta for an image, (N, 3, H, W) and a list of metas for a batch."""

    pixel_values: torch.Tensor
    meta: PreprocessMeta | list[PreprocessMeta]

    @property
    def pixel_mask(self) -> torch.Tensor:
        """1 on image pixels, 0 on padding: (H, W) for an image, (N, H, W) for a batch."""
        if isinstance(self.meta, list):
            return stack_pixel_masks(self.meta)
        return self.meta.pixel_mask()


class SingleModelPreprocessor:
    """Turns images into one model's input tensor plus the geometry needed to map annotations and predictions."""

    def __init__(self, name: str, config: ImagePreprocessing) -> None:
        self.name = name
        self.config = config
        _check_padding_fits(name, config)
        self._mean = torch.tensor(config.mean, dtype=torch.float32) * (1.0 / config.rescale_factor)
        self._std = torch.tensor(config.std, dtype=torch.float32) * (1.0 / config.rescale_factor)
        self._pad_fill = float(config.pad_value * config.rescale_factor)

    def __repr__(self) -> str:
        return f"SingleModelPreprocessor({self.name!r}, {self.config!r})"

    def plan(self, height: int, width: int) -> PreprocessMeta:
        """The geometry of a height x width image alone, without touching pixels (maps annotations from sizes)."""
        placement = place(self.config, height, width)
        if min(placement.pad) < 0:
            raise ConfigError(
                f"a {height}x{width} image resizes to {placement.resized_size}, larger than pad_to "
                f"{self.config.pad_to}", where=f"preprocessing.{self.name}.pad_to",
                fix="make pad_to at least longest_edge on both sides, or set it to null")
        return PreprocessMeta.build((height, width), placement.resized_size, placement.pad)

    def __call__(self, image_or_batch: ImageInput | Sequence[ImageInput]) -> Preprocessed:
        """One image -> ((3, H, W), meta); a list -> ((N, 3, H, W), [meta, ...]), padded to a common size."""
        if not is_batch(image_or_batch):
            return Preprocessed(*self._one(load_rgb(image_or_batch)))
        if len(image_or_batch) == 0:
            raise ValueError("an empty batch has nothing to preprocess")
        tensors, metas = zip(*(self._one(load_rgb(image)) for image in image_or_batch))
        height = max(meta.input_size[0] for meta in metas)
        width = max(meta.input_size[1] for meta in metas)
        padded = [meta.padded_to((height, width)) for meta in metas]
        batch = [F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]), value=self._pad_fill)
                 for tensor in tensors]
        return Preprocessed(torch.stack(batch), padded)

    def _one(self, rgb: np.ndarray) -> tuple[torch.Tensor, PreprocessMeta]:
        meta = self.plan(*rgb.shape[:2])
        resized = resize_pixels(rgb, meta.resized_size, self.config.strategy)
        normalized = (resized.to(torch.float32) - self._mean[:, None, None]) / self._std[:, None, None]
        left, top, right, bottom = meta.pad
        return F.pad(normalized, (left, right, top, bottom), value=self._pad_fill), meta


def for_model(name: str, config: PreprocessingConfig | dict[str, Any] | None = None) -> SingleModelPreprocessor:
    """The preprocessor of one model family ('grounding_dino', 'sam' or 'yolo'); config None: the schema defaults."""
    if name not in MODEL_NAMES:
        raise ConfigError(f"no preprocessing for model {name!r}", where="preprocessing",
                          fix=f"use one of: {', '.join(MODEL_NAMES)}")
    return SingleModelPreprocessor(name, getattr(as_preprocessing_config(config), name))


def as_preprocessing_config(config: PreprocessingConfig | dict[str, Any] | None) -> PreprocessingConfig:
    """A validated PreprocessingConfig from a model, a plain mapping or None (defaults); bad values -> ConfigError."""
    if config is None:
        return PreprocessingConfig()
    if isinstance(config, PreprocessingConfig):
        return config
    try:
        return PreprocessingConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"invalid preprocessing config: {problems}", where="preprocessing",
                          fix="see preprocessing.template.yaml for each key") from None


def _check_padding_fits(name: str, config: ImagePreprocessing) -> None:
    """A fixed canvas must hold any image the resize can produce (up to longest_edge on either side)."""
    if config.strategy == "letterbox" or config.pad_to is None:
        return
    if min(config.pad_to) < config.longest_edge:
        raise ConfigError(
            f"pad_to {list(config.pad_to)} is smaller than longest_edge {config.longest_edge}: "
            f"{config.strategy} can make either side that long", where=f"preprocessing.{name}.pad_to",
            fix=f"set pad_to to at least [{config.longest_edge}, {config.longest_edge}], or to null")
