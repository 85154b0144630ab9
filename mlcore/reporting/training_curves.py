"""Training curves: each teacher's and the student's loss and validation metric per epoch, one picture.

Read from the runs' own epoch records (`TeacherRun.epochs`, `DistillationResult.epochs`), so the picture is what the
tables say. A run with a before-fine-tuning baseline shows it as epoch -1 of its metric curve: the gain is visible.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlcore.io import atomic_open

LOSS_KEYS = ("train_loss", "loss")


@dataclass(frozen=True)
class Curve:
    """One model's epochs: its validation metric's name, the epoch records, and the metric before training."""

    name: str
    metric: str
    epochs: Sequence[Mapping[str, float]]
    before: float | None = None


def training_curves(curves: Sequence[Curve], output: str | os.PathLike[str]) -> Path | None:
    """Write a two-panel PNG (loss; validation metric) to OUTPUT; None when no curve has an epoch."""
    curves = [curve for curve in curves if curve.epochs]
    if not curves:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for curve in curves:
        epochs = [int(record.get("epoch", index)) for index, record in enumerate(curve.epochs)]
        losses = [_loss(record) for record in curve.epochs]
        if not all(math.isnan(value) for value in losses):
            loss_axes.plot(epochs, losses, marker=".", label=curve.name)
        values = [_number(record.get(curve.metric)) for record in curve.epochs]
        if curve.before is not None:
            epochs, values = [-1, *epochs], [curve.before, *values]
        metric_axes.plot(epochs, values, marker=".", label=f"{curve.name} ({curve.metric})")
    loss_axes.set(title="training loss (log scale)", xlabel="epoch", yscale="log")
    metric_axes.set(title="validation metric (epoch -1: before training)", xlabel="epoch", ylim=(0, 1))
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(output) as handle:
        figure.savefig(handle, format="png")
    return output


def _loss(record: Mapping[str, float]) -> float:
    """The epoch's training loss (NaN when it has none: matplotlib leaves a gap)."""
    for key in LOSS_KEYS:
        value = _number(record.get(key))
        if value > 0:
            return value
    return math.nan


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan
