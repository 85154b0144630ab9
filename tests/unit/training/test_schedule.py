"""LR schedules: warmup to the peak, then cosine/linear down to min_lr at the last step, step drops, constant."""

from __future__ import annotations

import math

import pytest
import torch.nn.functional as F

from mlcore.training import TrainingManager, lr_factor
from tests.unit.training.conftest import dynamics, mlp, regression_data

PEAK, FLOOR = 1e-2, 0.1


def _lrs_of_each_optimizer_step(config, batches_per_epoch: int, epochs: int) -> list[float]:
    x, y = regression_data(4)
    model = mlp()
    manager = TrainingManager(
        model, model.parameters(), config, device="cpu", batches_per_epoch=batches_per_epoch, epochs=epochs
    )
    lrs = []
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            result = manager.training_step(lambda: F.mse_loss(model(x), y))
            if result.stepped:
                lrs.append(result.lr)
        lr = manager.lr
        if manager.flush():
            lrs.append(lr)
    assert manager.global_step == manager.total_steps == len(lrs)
    return lrs


def test_warmup_then_cosine_reaches_min_lr_at_the_last_step() -> None:
    config = dynamics(scheduler="cosine", lr=PEAK, min_lr_ratio=FLOOR, warmup_steps=4)
    lrs = _lrs_of_each_optimizer_step(config, batches_per_epoch=7, epochs=3)  # 21 steps: 4 warmup + 17 decaying

    assert len(lrs) == 21
    assert lrs[:5] == pytest.approx([PEAK * k / 5 for k in (1, 2, 3, 4, 5)])  # rises, never trains at 0
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    quarter, half = 4 + 4, 4 + 8  # 16 decay intervals from step 4 to step 20
    assert lrs[quarter] == pytest.approx(PEAK * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lrs[half] == pytest.approx(PEAK * (FLOOR + (1 - FLOOR) * 0.5))
    assert lrs[-1] == pytest.approx(PEAK * FLOOR)


def test_linear_decay_counts_optimizer_steps_not_micro_batches() -> None:
    config = dynamics(scheduler="linear", lr=PEAK, min_lr_ratio=FLOOR, warmup_epochs=1.0, grad_accum_steps=2)
    lrs = _lrs_of_each_optimizer_step(config, batches_per_epoch=5, epochs=3)  # 3 steps per epoch (last one flushed)

    assert len(lrs) == 9
    assert lrs[:4] == pytest.approx([PEAK / 4, PEAK / 2, PEAK * 3 / 4, PEAK])  # warmup: one epoch = 3 steps
    assert lrs[3:] == pytest.approx([PEAK * (FLOOR + (1 - FLOOR) * (1 - k / 5)) for k in range(6)])


def test_step_schedule_drops_by_gamma_every_step_size_epochs() -> None:
    factor = lr_factor(dynamics(scheduler="step", step_size_epochs=2, step_gamma=0.5), steps_per_epoch=3,
                       total_steps=18)
    assert [factor(k) for k in range(18)] == pytest.approx([1.0] * 6 + [0.5] * 6 + [0.25] * 6)


def test_constant_holds_the_peak_after_warmup() -> None:
    factor = lr_factor(dynamics(scheduler="constant", warmup_steps=1), steps_per_epoch=4, total_steps=8)
    assert [factor(k) for k in range(8)] == pytest.approx([0.5] + [1.0] * 7)
