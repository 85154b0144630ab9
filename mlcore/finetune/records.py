"""What teacher fine-tuning produced: one `TeacherRun` per teacher, gathered in a `TeacherTrainingResult`.

Light (no transformers): the Prefect tasks and the report read these without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS_NAME = "metrics.json"


@dataclass
class TeacherRun:
    """What training one teacher produced; `to_dict()` is its entry in metrics.json."""

    family: str
    preset: str
    adapter_dir: Path
    best_metric: str
    best: float | None
    best_epoch: int | None
    epochs: list[dict[str, float]]  # per epoch: train_loss, the val metrics, epoch_seconds
    lora: dict[str, Any]
    timings: dict[str, float]
    resumed_from: str | None
    train_images: int
    val_images: int
    baseline: dict[str, float]  # the base model's val scores before fine-tuning (LoRA starts as a no-op)
    baseline_per_class: dict[int, float | None] = field(default_factory=dict)
    per_class: dict[str, Any] = field(default_factory=dict)  # metric, and per class name: before, after, change
    forgetting: dict[str, Any] = field(default_factory=dict)  # untrained classes (+ control prompts for DINO)
    loss: dict[str, Any] = field(default_factory=dict)  # how the loss was set up (aux loss, label maps)

    def to_dict(self) -> dict[str, Any]:
        before = self.baseline.get(self.best_metric)
        gain = None if self.best is None or before is None else self.best - before
        return {"preset": self.preset, "adapter": str(self.adapter_dir),
                "best": {"metric": self.best_metric, "value": self.best, "epoch": self.best_epoch},
                "before_fine_tuning": self.baseline, "gain": gain, "per_class": self.per_class,
                "forgetting": self.forgetting, "loss": self.loss,
                "epochs": self.epochs, "lora": self.lora, "timings": self.timings, "resumed_from": self.resumed_from,
                "train_images": self.train_images, "val_images": self.val_images}


@dataclass
class TeacherTrainingResult:
    output_dir: Path
    mode: str
    device: str
    runs: dict[str, TeacherRun] = field(default_factory=dict)

    @property
    def adapters(self) -> dict[str, Path]:
        return {family: run.adapter_dir for family, run in self.runs.items()}

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / METRICS_NAME
