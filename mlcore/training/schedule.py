"""Learning-rate schedules from `TrainingDynamicsConfig`: linear warmup, then cosine, linear, step or constant.

The schedule is a `LambdaLR` that moves once per optimizer step (not per epoch), so a run resumed mid-epoch continues
on the exact same curve. Factor k is the one used by optimizer step k (0-based):

* warmup (W steps): (k + 1) / (W + 1), rising towards the peak without ever training at lr 0;
* cosine / linear: from the peak at step W down to `min_lr_ratio` at the last step (total_steps - 1);
* step: x `step_gamma` every `step_size_epochs` epochs, counted from the start of training;
* constant: the peak.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from mlcore.config.schemas.training import TrainingDynamicsConfig


def warmup_steps(config: TrainingDynamicsConfig, steps_per_epoch: int, total_steps: int) -> int:
    """`warmup_steps` when set, else `warmup_epochs` x steps per epoch; never longer than the run."""
    steps = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_epochs * steps_per_epoch)
    return min(steps, total_steps)


def lr_factor(config: TrainingDynamicsConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak lr for optimizer step k (a plain function, so LambdaLR saves no copy of it)."""
    warmup = warmup_steps(config, steps_per_epoch, total_steps)
    decay_span = max(total_steps - 1 - warmup, 1)
    floor = config.min_lr_ratio
    steps_per_drop = config.step_size_epochs * max(steps_per_epoch, 1)

    def factor(step: int) -> float:
        warm = (step + 1) / (warmup + 1) if step < warmup else 1.0
        progress = min(max((step - warmup) / decay_span, 0.0), 1.0)
        if config.scheduler == "cosine":
            decay = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif config.scheduler == "linear":
            decay = floor + (1.0 - floor) * (1.0 - progress)
        elif config.scheduler == "step":
            decay = config.step_gamma ** (step // steps_per_drop)
        else:
            decay = 1.0
        return warm * decay

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingDynamicsConfig, steps_per_epoch: int, total_steps: int
) -> LambdaLR:
    """A per-optimizer-step `LambdaLR` over every param group of `optimizer` (each keeps its own peak lr)."""
    return LambdaLR(optimizer, lr_factor(config, steps_per_epoch, total_steps))
