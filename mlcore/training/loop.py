"""The epoch loop every trainer shares: batches through `TrainingManager`, checkpoints, one evaluation per epoch.

    timings = run_epochs(name="student", manager=manager, ckpt=ckpt, state=state, loader=loader, epochs=10,
                         batch_loss=lambda batch, epoch: ..., evaluate=lambda: {"map50_95": ...},
                         tensorboard_dir=run_dir / "tensorboard")

Resuming is the checkpoint's `state`: the loop starts at its epoch and skips the batches that epoch already did.
What differs between trainers comes in as callables: the loss of a batch, the evaluation, extra numbers for the
epoch's record (`epoch_extras`), and what to do once an epoch is decided (`on_epoch_end`, e.g. save a model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mlcore.logs import get_logger, tensorboard_writer
from mlcore.training.checkpoint import CheckpointManager, EpochDecision, ResumeState
from mlcore.training.manager import TrainingManager
from mlcore.training.scalars import TrainingScalars

log = get_logger(__name__)


@dataclass
class LoopTimings:
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def run_epochs(*, name: str, manager: TrainingManager, ckpt: CheckpointManager, state: ResumeState,
               loader: DataLoader, epochs: int, batch_loss: Callable[[Any, int], torch.Tensor],
               evaluate: Callable[[], dict[str, float]], tensorboard_dir: Path, progress: bool = True,
               on_step: Callable[[int], None] | None = None,
               epoch_extras: Callable[[], dict[str, float]] | None = None,
               on_epoch_end: Callable[[int, dict[str, float], EpochDecision], None] | None = None) -> LoopTimings:
    """Train from the resume point to `epochs` (or early stopping); returns the time spent training / evaluating."""
    timings = LoopTimings()
    batch_size = loader.batch_size or 1
    items = loader.sampler.size  # type: ignore[attr-defined]  (an EpochSampler: epoch_loader)
    with tensorboard_writer(tensorboard_dir) as writer:
        scalars = TrainingScalars(writer)
        for epoch in range(state.epoch, epochs):
            if ckpt.tracker.stopped:
                break
            epoch_started = time.perf_counter()
            manager.train()
            start = state.start_batch(epoch)
            # A step checkpoint after an epoch's last batch resumes at its end: nothing left to skip past.
            loader.sampler.set_epoch(epoch, skip=min(start * batch_size, items))
            losses = []
            bar = tqdm(loader, desc=f"{name} epoch {epoch + 1}/{epochs}", unit="batch", disable=not progress,
                       initial=start, total=start + len(loader))
            for batch_index, batch in enumerate(bar, start=start):
                result = manager.training_step(lambda: batch_loss(batch, epoch))
                scalars.step(result, manager.global_step)
                if math.isfinite(result.loss):
                    losses.append(result.loss)
                    bar.set_postfix(loss=f"{result.loss:.4g}")
                ckpt.maybe_save_step(epoch, batch_index, manager)
                if on_step is not None:
                    on_step(manager.global_step)
            manager.flush()
            timings.train_seconds += time.perf_counter() - epoch_started
            eval_started = time.perf_counter()
            manager.eval()
            metrics = evaluate()
            timings.eval_seconds += time.perf_counter() - eval_started
            record = {"train_loss": sum(losses) / len(losses) if losses else float("nan"), **metrics,
                      **(epoch_extras() if epoch_extras is not None else {}),
                      "epoch_seconds": time.perf_counter() - epoch_started}
            decision = ckpt.end_epoch(epoch, record, manager, final=epoch == epochs - 1)
            scalars.epoch(epoch, metrics, manager.global_step, decision)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record, decision)
            log.info("%s epoch %d: loss %.4g, %s", name, epoch, record["train_loss"],
                     ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))
            if decision.stop:
                break
    return timings
