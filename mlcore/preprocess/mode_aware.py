"""Preprocess for every model a dataset's mode trains: its recommended teachers plus the YOLO student, always.

detection_only -> grounding_dino + yolo; segmentation_only -> sam + yolo; detection_and_segmentation -> all three
(the teachers come from `ModeConfig.recommended_teachers`). Each image is decoded once and shared by the models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlcore.config.loader import load_config
from mlcore.config.schemas.data import PreprocessingConfig
from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import ConfigError
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb
from mlcore.preprocess.meta import PreprocessMeta
from mlcore.preprocess.single import (MODEL_NAMES, Preprocessed, SingleModelPreprocessor, as_preprocessing_config,
                                      for_model)

STUDENT = "yolo"
TEACHERS = ("grounding_dino", "sam")


class ModeAwarePreprocessor:
    """Runs the active models' preprocessors; `preprocessor(image)` -> {'grounding_dino': (tensor, meta), ...}."""

    def __init__(self, preprocessors: dict[str, SingleModelPreprocessor]) -> None:
        self.preprocessors = {name: preprocessors[name] for name in MODEL_NAMES if name in preprocessors}

    @classmethod
    def from_mode_config(
        cls,
        mode_config: ModeConfig | str | os.PathLike[str],
        preprocessing_config: PreprocessingConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    ) -> ModeAwarePreprocessor:
        """Pick the models from the mode config (or its `.mode_config.json` path); sizes from preprocessing_config
        (a model, a mapping, a preprocessing YAML path, or None for the defaults)."""
        mode = _read_mode_config(mode_config)
        unknown = [name for name in mode.recommended_teachers if name not in TEACHERS]
        if unknown:
            raise ConfigError(f"unknown teacher(s) {unknown} in recommended_teachers", where=MODE_CONFIG_NAME,
                              fix=f"teachers are any of: {', '.join(TEACHERS)}; re-run validate to rewrite the file")
        config = _read_preprocessing_config(preprocessing_config)
        return cls({name: for_model(name, config) for name in [*mode.recommended_teachers, STUDENT]})

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.preprocessors)

    def __getitem__(self, name: str) -> SingleModelPreprocessor:
        return self.preprocessors[name]

    def plan(self, height: int, width: int) -> dict[str, PreprocessMeta]:
        """Each active model's geometry for a height x width image, without pixels."""
        return {name: preprocessor.plan(height, width) for name, preprocessor in self.preprocessors.items()}

    def __call__(self, image_or_batch: ImageInput | Sequence[ImageInput]) -> dict[str, Preprocessed]:
        """One image or a list of images -> {model: (pixel_values, meta)} for the active models."""
        if is_batch(image_or_batch):
            decoded: Any = [load_rgb(image) for image in image_or_batch]
        else:
            decoded = load_rgb(image_or_batch)
        return {name: preprocessor(decoded) for name, preprocessor in self.preprocessors.items()}


def _read_mode_config(mode_config: ModeConfig | str | os.PathLike[str]) -> ModeConfig:
    if isinstance(mode_config, ModeConfig):
        return mode_config
    path = Path(mode_config)
    try:
        return ModeConfig.read(path)
    except FileNotFoundError:
        raise ConfigError("mode config not found", where=str(path),
                          fix="run `mlcore validate` on the dataset; it writes .mode_config.json") from None
    except ValidationError as exc:
        raise ConfigError(f"mode config is invalid: {exc.errors()[0]['msg']}", where=str(path),
                          fix="re-run `mlcore validate` to rewrite it") from None


def _read_preprocessing_config(config: PreprocessingConfig | dict[str, Any] | str | os.PathLike[str] | None
                               ) -> PreprocessingConfig:
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, PreprocessingConfig)
    return as_preprocessing_config(config)
