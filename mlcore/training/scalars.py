"""TensorBoard scalars for a training loop: per optimizer step (mean loss, lr, grad norm) and per epoch (metrics)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlcore.logs import log_scalars
from mlcore.training.checkpoint import EpochDecision
from mlcore.training.manager import StepResult

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class TrainingScalars:
    """`scalars.step(result, manager.global_step)` after every micro-batch, `scalars.epoch(...)` after evaluation.

        with tensorboard_writer(run_dir / "tensorboard") as writer:
            scalars = TrainingScalars(writer, every_n_steps=10)
    """

    def __init__(self, writer: SummaryWriter, *, every_n_steps: int = 1) -> None:
        self.writer = writer
        self.every_n_steps = every_n_steps
        self._losses: list[float] = []  # finite losses of the current accumulation window

    def step(self, result: StepResult, global_step: int) -> None:
        if math.isfinite(result.loss):
            self._losses.append(result.loss)
        if not result.stepped:
            return
        if global_step % self.every_n_steps == 0:
            log_scalars(
                self.writer, global_step, **{"train/loss": self._mean_loss(), "train/lr": result.lr,
                                             "train/grad_norm": result.grad_norm},
            )
        self._losses.clear()

    def epoch(
        self, epoch: int, metrics: dict[str, Any], global_step: int, decision: EpochDecision | None = None
    ) -> None:
        """Evaluation metrics as `val/<name>` at `global_step`, so they line up with the training curves."""
        scalars: dict[str, Any] = {"epoch": epoch, "train/loss": self._mean_loss()}
        for name, value in metrics.items():
            try:
                scalars[f"val/{name}"] = float(value)
            except (TypeError, ValueError):
                continue  # per-class tables and other non-scalars
        if decision is not None:
            scalars["val/best"] = decision.best
        log_scalars(self.writer, global_step, **scalars)
        self._losses.clear()  # the epoch's last (flushed) window

    def _mean_loss(self) -> float | None:
        return sum(self._losses) / len(self._losses) if self._losses else None
