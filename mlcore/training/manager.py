"""One optimizer step at a time: mixed precision, gradient accumulation, clipping, frozen BatchNorm, skipped NaNs.

    manager = TrainingManager(model, params, config, device="cuda", batches_per_epoch=len(loader), epochs=20)
    manager.train()
    for batch in loader:
        result = manager.training_step(lambda: compute_loss(model, batch))   # StepResult(loss, stepped, ...)
    manager.flush()                                                           # the epoch's last, partial window

The closure runs under autocast (CUDA only). Its loss is divided by `grad_accum_steps` and back-propagated; every
`grad_accum_steps` micro-batches (and at `flush()`) the gradients are unscaled, clipped and the optimizer and the
per-step LR schedule advance. A non-finite loss is skipped (no backward) with a warning; too many in a row raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager

import torch
from torch import nn

from mlcore.config.schemas.training import TrainingDynamicsConfig
from mlcore.errors import ModelError, TrainingError
from mlcore.logs import get_logger
from mlcore.training.batchnorm import freeze_batchnorm, refreeze_batchnorm
from mlcore.training.precision import resolve_precision
from mlcore.training.schedule import build_scheduler

if TYPE_CHECKING:
    from mlcore.training.distributed import DistributedContext

log = get_logger(__name__)

DEFAULT_MAX_NONFINITE_IN_A_ROW = 5


@dataclass(frozen=True)
class StepResult:
    """What one `training_step` did."""

    loss: float  # this micro-batch's loss as computed (not divided by accumulation); nan/inf when skipped
    stepped: bool  # the optimizer (and the LR schedule) stepped after this micro-batch
    skipped: bool  # the loss (or, on an fp32/bf16 step, the gradient) was not finite and was thrown away
    lr: float  # learning rate of the optimizer step this micro-batch belongs to
    grad_norm: float | None = None  # total gradient norm before clipping, when stepped


class TrainingManager:
    """AdamW + per-step LR schedule + autocast/GradScaler + accumulation + clipping around a caller's loss closure.

    Seeding is the caller's first step (`seed_everything(config.seed, config.deterministic)`), before the model is
    built. Checkpoint with `CheckpointManager`, which stores `state_dict()` beside the trainable tensors.

    Args:
        model: the module being trained (already on `device`); only used for train/eval modes and BatchNorm freezing.
        params: parameters or param groups to optimise; frozen ones (requires_grad False) are left out.
        config: lr, schedule, weight decay, accumulation, clipping (`clip_grad_norm`), precision, BatchNorm freezing.
        device: where the model runs; decides whether autocast is used at all.
        batches_per_epoch: micro-batches per epoch (`len(loader)`); with `epochs` it sizes the LR schedule.
        max_nonfinite_in_a_row: consecutive non-finite losses tolerated before `TrainingError`.
        distributed: set when several processes train together (DDP): a loss skipped on one is skipped on all, as
            their backward passes meet to average gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        config: TrainingDynamicsConfig,
        *,
        device: torch.device | str,
        batches_per_epoch: int,
        epochs: int,
        max_nonfinite_in_a_row: int = DEFAULT_MAX_NONFINITE_IN_A_ROW,
        distributed: DistributedContext | None = None,
    ) -> None:
        self.model = model
        self.distributed = distributed
        self.config = config
        self.device = torch.device(device)
        self.accum_steps = config.grad_accum_steps
        self.max_nonfinite_in_a_row = max_nonfinite_in_a_row
        # Before collecting params: frozen BatchNorm weights must not reach the optimizer.
        self.frozen_batchnorm_layers = freeze_batchnorm(model) if config.freeze_batchnorm else 0

        self.optimizer = torch.optim.AdamW(_param_groups(params), lr=config.lr, weight_decay=config.weight_decay)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.steps_per_epoch = math.ceil(batches_per_epoch / self.accum_steps)
        self.total_steps = self.steps_per_epoch * epochs
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch, self.total_steps)
        self.precision = resolve_precision(config.mixed_precision, self.device)
        self.scaler = self.precision.make_scaler()

        self.global_step = 0  # optimizer steps taken
        self.nonfinite_total = 0
        self._nonfinite_in_a_row = 0
        self._micro_batches = 0  # in the current accumulation window
        self._contributed = 0  # ...of which back-propagated (finite loss)
        if config.ema.enabled:
            log.warning("ema.enabled: TrainingManager keeps no weight average yet; training without EMA")
        log.info(
            "training: %d trainable tensors, %s on %s, accumulation %d, clip %s, %d steps",
            len(self.params), self.precision.name, self.device, self.accum_steps, config.clip_grad_norm,
            self.total_steps,
        )

    # -- modes ---------------------------------------------------------------------------------------------------

    def train(self) -> None:
        """`model.train()`, with frozen BatchNorm layers kept in eval mode."""
        self.model.train()
        refreeze_batchnorm(self.model)

    def eval(self) -> None:
        self.model.eval()

    def autocast(self) -> ContextManager[object]:
        """The training autocast context, for evaluation code that wants the same precision."""
        return self.precision.autocast()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def at_step_boundary(self) -> bool:
        """No micro-batch is waiting for an optimizer step: the state can be checkpointed exactly."""
        return self._micro_batches == 0

    # -- stepping ------------------------------------------------------------------------------------------------

    def training_step(self, compute_loss: Callable[[], torch.Tensor]) -> StepResult:
        """Run `compute_loss()` under autocast, back-propagate its share, and step the optimizer when a window ends."""
        lr = self.lr
        with self.precision.autocast():
            loss = compute_loss()
        if loss.numel() != 1:
            raise ValueError(f"compute_loss must return a scalar loss, got shape {tuple(loss.shape)}")
        value = float(loss.detach())  # one host sync per micro-batch: the finiteness check needs the value
        self._micro_batches += 1
        skipped = not math.isfinite(value)
        if self.distributed is not None:
            skipped = self.distributed.any(skipped)
        if skipped:
            self._record_nonfinite(f"loss is {value}" if not math.isfinite(value) else "another process's loss is "
                                   "not finite")
        else:
            self._nonfinite_in_a_row = 0
            share = loss.float() / self.accum_steps
            (self.scaler.scale(share) if self.scaler is not None else share).backward()
            self._contributed += 1
        if self._micro_batches < self.accum_steps:
            return StepResult(value, stepped=False, skipped=skipped, lr=lr)
        stepped, grad_norm = self._optimizer_step()
        return StepResult(value, stepped=stepped, skipped=skipped or not stepped, lr=lr, grad_norm=grad_norm)

    def flush(self) -> bool:
        """Step on a partial accumulation window (call at the end of each epoch); True when a step happened."""
        if self._micro_batches == 0:
            return False
        return self._optimizer_step()[0]

    def _optimizer_step(self) -> tuple[bool, float | None]:
        contributed, self._micro_batches, self._contributed = self._contributed, 0, 0
        if contributed == 0:  # every loss of this window was skipped: nothing to learn from
            self.optimizer.zero_grad(set_to_none=True)
            return False, None
        if contributed < self.accum_steps:
            # Each share was divided by accum_steps; a partial window (skipped losses, or flush) is rescaled so its
            # gradient is the mean over the micro-batches that actually contributed.
            for param in self.params:
                if param.grad is not None:
                    param.grad.mul_(self.accum_steps / contributed)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.config.clip_grad_norm if self.config.clip_grad_norm is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if self.scaler is not None:
            # Inf/NaN gradients are routine while fp16 loss scaling calibrates: the scaler skips and backs off.
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._record_nonfinite(f"gradient norm is {grad_norm}")
            return False, grad_norm
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1
        return True, grad_norm

    def _record_nonfinite(self, what: str) -> None:
        self.nonfinite_total += 1
        self._nonfinite_in_a_row += 1
        log.warning(
            "step %d: %s; skipped (%d in a row, %d in total)",
            self.global_step, what, self._nonfinite_in_a_row, self.nonfinite_total,
        )
        if self._nonfinite_in_a_row >= self.max_nonfinite_in_a_row:
            raise TrainingError(
                f"{self._nonfinite_in_a_row} non-finite losses/gradients in a row at optimizer step {self.global_step}",
                fix="lower lr, raise warmup, set clip_grad_norm, try mixed_precision bf16 or off, or check the "
                "data for empty/degenerate targets",
            )

    # -- checkpointing -------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, schedule, scaler and counters; only at a step boundary (pending gradients are not saved)."""
        if not self.at_step_boundary:
            raise RuntimeError(
                f"{self._micro_batches} micro-batch(es) wait for an optimizer step; checkpoint after a step or flush()"
            )
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "nonfinite_total": self.nonfinite_total,
            "precision": self.precision.name,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; parts left out of the checkpoint (by CheckpointConfig) stay fresh, with a warning."""
        for part, target in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            if state.get(part) is not None:
                target.load_state_dict(state[part])
            else:
                log.warning("checkpoint has no %s state: it starts fresh, so the resume is not exact", part)
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        if state.get("precision", self.precision.name) != self.precision.name:
            log.warning("checkpoint trained in %s, resuming in %s", state["precision"], self.precision.name)
        if state.get("total_steps", self.total_steps) != self.total_steps:
            log.warning(
                "the LR schedule now spans %d steps (was %d): epochs or batch count changed since the checkpoint",
                self.total_steps, state["total_steps"],
            )
        self.global_step = int(state["global_step"])
        self.nonfinite_total = int(state.get("nonfinite_total", 0))


def _param_groups(params: Iterable[nn.Parameter] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    items = list(params)
    groups = [dict(item) for item in items] if items and isinstance(items[0], dict) else [{"params": items}]
    for group in groups:
        group["params"] = [p for p in group["params"] if p.requires_grad]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ModelError(
            "no trainable parameters: every given parameter has requires_grad=False",
            fix="pass the adapter (LoRA) parameters, or unfreeze the layers to train",
        )
    return groups
