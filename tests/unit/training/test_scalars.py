"""TrainingScalars: one TensorBoard point per optimizer step (window-mean loss, lr, grad norm) and per epoch."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlcore.logs import tensorboard_writer
from mlcore.training import TrainingManager, TrainingScalars
from tests.unit.training.conftest import dynamics, mlp, regression_data


def test_scalars_are_written_per_optimizer_step_and_per_epoch(tmp_path) -> None:
    x, y = regression_data(8)
    model = mlp()
    manager = TrainingManager(
        model, model.parameters(), dynamics(grad_accum_steps=2), device="cpu", batches_per_epoch=4, epochs=1
    )
    losses = []
    with tensorboard_writer(tmp_path / "tb") as writer:
        scalars = TrainingScalars(writer)
        for i in range(4):
            result = manager.training_step(lambda i=i: F.mse_loss(model(x[2 * i : 2 * i + 2]), y[2 * i : 2 * i + 2]))
            losses.append(result.loss)
            scalars.step(result, manager.global_step)
        scalars.epoch(0, {"map50": 0.4, "per_class": [0.1, 0.2]}, manager.global_step)

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([sum(losses[:2]) / 2, sum(losses[2:]) / 2], rel=1e-6)
    assert [e.step for e in events.Scalars("train/lr")] == [1, 2]
    assert [e.step for e in events.Scalars("train/grad_norm")] == [1, 2]
    assert [(e.step, e.value) for e in events.Scalars("val/map50")] == [(2, pytest.approx(0.4))]
    assert "val/per_class" not in events.Tags()["scalars"]
