"""Tiny models, synthetic data and config builders for the training tests (CPU, milliseconds each)."""

from __future__ import annotations


import torch
from torch import nn

from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig


def mlp(*, batchnorm: bool = False, dropout: float = 0.0, width: int = 8) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(4, width)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(width))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 2)]
    return nn.Sequential(*layers)


def dynamics(**overrides: object) -> TrainingDynamicsConfig:
    """Plain settings unless a test asks: constant lr, no warmup, no clipping, fp32."""
    settings: dict[str, object] = {
        "scheduler": "constant", "lr": 1e-2, "warmup_epochs": 0.0, "clip_grad_norm": None, "mixed_precision": "auto",
    }
    return TrainingDynamicsConfig(**{**settings, **overrides})


def checkpointing(save_dir: object, **overrides: object) -> CheckpointConfig:
    settings: dict[str, object] = {"save_dir": save_dir, "best_metric": "score", "best_mode": "max"}
    return CheckpointConfig(**{**settings, **overrides})


def regression_data(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 4, generator=generator)
    return x, torch.stack([x.sum(1), x[:, 0] - x[:, 1]], dim=1)
