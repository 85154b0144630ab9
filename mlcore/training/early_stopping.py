"""Best-metric tracking and early stopping: which epoch is best, and when to give up waiting for a better one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mlcore.config.schemas.training import CheckpointConfig
from mlcore.errors import ConfigError


@dataclass
class MetricTracker:
    """Improvement means better than the best so far by more than `min_delta`; the best checkpoint moves only then.

    `patience` None disables stopping (the best is still tracked).
    """

    metric: str
    mode: Literal["max", "min"]
    patience: int | None
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch: {"epoch": e, metric: value}

    @classmethod
    def from_config(cls, config: CheckpointConfig) -> MetricTracker:
        stopping = config.early_stopping
        return cls(
            metric=config.best_metric,
            mode=config.best_mode,
            patience=stopping.patience if stopping.enabled else None,
            min_delta=stopping.min_delta,
        )

    def metric_value(self, metrics: dict[str, Any]) -> float:
        if self.metric not in metrics:
            available = ", ".join(sorted(metrics)) or "(none)"
            raise ConfigError(
                f"best_metric {self.metric!r} is not among this evaluation's metrics: {available}",
                where="checkpoint_config.best_metric",
                fix=f"set best_metric to one of: {available}",
            )
        return float(metrics[self.metric])

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, metrics: dict[str, Any]) -> bool:
        """Record `epoch`'s metrics; True when it is the new best. Sets `stopped` once patience runs out."""
        value = self.metric_value(metrics)
        self.history.append({"epoch": epoch, **_scalars(metrics)})
        improved = self.is_improvement(value)
        if improved:
            self.best, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
        else:
            self.epochs_without_improvement += 1
        if self.patience is not None and self.epochs_without_improvement >= self.patience:
            self.stopped = True
        return improved

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The rule (metric, mode, patience, min_delta) comes from today's config and only the progress is restored,
        # so resuming a stopped run with more patience continues it.
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.stopped = self.patience is not None and self.epochs_without_improvement >= self.patience
        self.history = list(state["history"])


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are single numbers (floats, ints, numpy scalars, 0-d tensors), as floats."""
    out = {}
    for name, value in metrics.items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out
