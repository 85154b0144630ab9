"""Tiny teachers (seeded random weights, CPU, well under a second each) and the inputs tests feed them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlcore.data.mode_config import ModeConfig
from mlcore.teachers import Teacher, load_grounding_dino, load_sam, weights



def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def dino_inputs(teacher: Teacher, images: list[np.ndarray], prompt_ids: list[int] | None = None
                ) -> dict[str, torch.Tensor]:
    """Preprocessed images plus the prompt "cat . dog ." (tiny vocabulary ids unless given)."""
    batch = teacher.preprocessor()(images)
    ids = prompt_ids or teacher.tokenizer("cat . dog .", return_tensors="pt")["input_ids"][0].tolist()
    input_ids = torch.tensor([ids] * len(images))
    return {"pixel_values": batch.pixel_values, "pixel_mask": batch.pixel_mask, "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids)}


def sam_inputs(teacher: Teacher, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Preprocessed images plus two boxes per image in the model frame."""
    batch = teacher.preprocessor()(images)
    boxes = torch.tensor([[[10.0, 20.0, 120.0, 90.0], [60.0, 40.0, 200.0, 180.0]]] * len(images))
    return {"pixel_values": batch.pixel_values, "input_boxes": boxes}


@pytest.fixture(autouse=True)
def no_models_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests decide where weights are: neither a developer's MLCORE_MODELS_DIR nor the checkout's models/ leaks in
    (the default folder becomes an empty one)."""
    monkeypatch.delenv("MLCORE_MODELS_DIR", raising=False)
    monkeypatch.setattr(weights, "DEFAULT_MODELS_DIR", tmp_path_factory.mktemp("default_models") / "models")


@pytest.fixture
def tiny_dino() -> Teacher:
    return load_grounding_dino("tiny")


@pytest.fixture
def tiny_sam() -> Teacher:
    return load_sam("tiny")


@pytest.fixture(scope="session")
def mode_configs(mode_config_paths: dict[str, Path]) -> dict[str, ModeConfig]:
    return {mode: ModeConfig.read(path) for mode, path in mode_config_paths.items()}
