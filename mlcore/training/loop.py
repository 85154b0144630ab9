"""The epoch loop every trainer shares: batches through `TrainingManager`, checkpoints, one evaluation per epoch.

    timings = run_epochs(name="student", manager=manager, ckpt=ckpt, state=state, loader=loader, epochs=10,
                         batch_loss=lambda batch, epoch: ..., evaluate=lambda: {"map50_95": ...},
                         tensorboard_dir=run_dir / "tensorboard")

Resuming is the checkpoint's `state`: the loop starts at its epoch and skips the batches that epoch already did.
What differs between trainers comes in as callables: the loss of a batch, the evaluation, extra numbers for the
epoch's record (`epoch_extras`), and what to do once an epoch is decided (`on_epoch_end`, e.g. save a model).

With `distributed` (several processes, DDP), every rank trains its shard of the epoch; rank 0 alone evaluates,
checkpoints, writes TensorBoard and calls `on_epoch_end`, then tells the others whether to stop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mlcore.logs import get_logger, tensorboard_writer
from mlcore.training.checkpoint import CheckpointManager, EpochDecision, ResumeState
from mlcore.training.manager import TrainingManager
from mlcore.training.scalars import TrainingScalars

if TYPE_CHECKING:
    from mlcore.training.distributed import DistributedContext

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
               on_epoch_end: Callable[[int, dict[str, float], EpochDecision], None] | None = None,
               distributed: DistributedContext | None = None) -> LoopTimings:
    """Train from the resume point to `epochs` (or early stopping); returns the time spent training / evaluating."""
    timings = LoopTimings()
    batch_size = loader.batch_size or 1
    items = loader.sampler.size  # type: ignore[attr-defined]  (an EpochSampler: epoch_loader)
    main = distributed is None or distributed.is_main
    progress = progress and main
    with tensorboard_writer(tensorboard_dir) if main else contextlib.nullcontext() as writer:
        scalars = TrainingScalars(writer) if main else None
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
                if math.isfinite(result.loss):
                    losses.append(result.loss)
                    bar.set_postfix(loss=f"{result.loss:.4g}")
                if scalars is not None:
                    scalars.step(result, manager.global_step)
                    ckpt.maybe_save_step(epoch, batch_index, manager)
                if on_step is not None:
                    on_step(manager.global_step)
            manager.flush()
            timings.train_seconds += time.perf_counter() - epoch_started
            if scalars is None:  # another rank: rank 0 evaluates and decides
                if distributed is not None and distributed.broadcast_flag(False):
                    break
                continue
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
            stop = decision.stop if distributed is None else distributed.broadcast_flag(decision.stop)
            if stop:
                break
    return timings
