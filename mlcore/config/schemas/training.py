"""Training-loop configs shared by the teacher and distillation trainers: optimisation dynamics and checkpointing."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mlcore.config.schemas.common import MIXED_PRECISION_HELP, ConfigModel, MixedPrecision


class EmaSettings(ConfigModel):
    enabled: bool = Field(default=False, description="Keep an exponential moving average of the weights for eval.")
    decay: float = Field(
        default=0.9999, gt=0.0, lt=1.0, description="EMA decay per step; 0.999-0.9999 (closer to 1 = smoother)."
    )


class TrainingDynamicsConfig(ConfigModel):
    """Learning-rate schedule, regularisation and reproducibility for mlcore's own training loops."""

    kind: Literal["training_dynamics"] = Field(default="training_dynamics", description="Config type.")
    scheduler: Literal["cosine", "linear", "step", "constant"] = Field(
        default="cosine", description="LR schedule after warmup: cosine, linear decay, step decay or constant."
    )
    lr: float = Field(default=1e-4, gt=0.0, description="Peak learning rate (reached after warmup).")
    min_lr_ratio: float = Field(
        default=0.01, ge=0.0, le=1.0, description="cosine/linear end at lr x this ratio."
    )
    step_size_epochs: int = Field(default=10, ge=1, description="step: epochs between LR drops.")
    step_gamma: float = Field(default=0.1, gt=0.0, le=1.0, description="step: factor applied at each drop.")
    warmup_epochs: float = Field(default=1.0, ge=0.0, description="Linear warmup length in epochs; 0: none.")
    warmup_steps: int | None = Field(
        default=None, ge=0, description="Warmup length in optimizer steps; when set it replaces warmup_epochs."
    )
    weight_decay: float = Field(default=1e-4, ge=0.0, description="AdamW weight decay (decoupled).")
    grad_accum_steps: int = Field(
        default=1, ge=1, description="Micro-batches per optimizer step: effective batch = batch x this."
    )
    clip_grad_norm: float | None = Field(default=1.0, gt=0.0, description="Clip the gradient norm to this; null: off.")
    mixed_precision: MixedPrecision = Field(default="auto", description=MIXED_PRECISION_HELP)
    ema: EmaSettings = Field(default_factory=EmaSettings, description="Weight averaging.")
    seed: int = Field(default=42, ge=0, description="Seed for Python, NumPy and torch RNGs.")
    deterministic: bool = Field(
        default=False, description="Force deterministic kernels: reproducible to the bit, often slower."
    )
    freeze_batchnorm: bool = Field(
        default=False, description="Keep BatchNorm statistics fixed; helps with small batches (< 8)."
    )


class EarlyStopping(ConfigModel):
    enabled: bool = Field(default=True, description="Stop when the best metric stops improving.")
    patience: int = Field(default=10, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0.0, description="Smallest change that counts as improvement.")


class CheckpointConfig(ConfigModel):
    """What is saved during training, which checkpoint is "best", and how a run resumes."""

    kind: Literal["checkpoint_config"] = Field(default="checkpoint_config", description="Config type.")
    save_dir: Path = Field(default=Path("runs/checkpoints"), description="Folder for checkpoints (created).")
    keep_last_k: int = Field(default=3, ge=1, description="Keep this many recent checkpoints plus the best one.")
    save_every_n_epochs: int = Field(default=1, ge=1, description="Checkpoint interval in epochs.")
    save_every_n_steps: int | None = Field(
        default=None,
        ge=1,
        description="Also save mid-epoch every this many optimizer steps (only the newest is kept), so a killed run "
        "resumes mid-epoch; null: only at epoch ends.",
    )
    best_metric: str = Field(
        default="map50_95", min_length=1, description="Metric that picks the best checkpoint (e.g. map50_95, map50)."
    )
    best_mode: Literal["max", "min"] = Field(default="max", description="max for mAP-like metrics, min for losses.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping, description="Early stopping.")
    save_optimizer_state: bool = Field(default=True, description="Store optimizer moments (needed for exact resume).")
    save_scheduler_state: bool = Field(default=True, description="Store the LR scheduler position.")
    save_scaler_state: bool = Field(default=True, description="Store the fp16 grad-scaler state.")
    save_rng_state: bool = Field(default=True, description="Store Python/NumPy/torch RNG states (same data order).")
    resume: bool | Path = Field(
        default=False,
        description="false: start fresh; true: resume from the newest checkpoint in save_dir; a path: from that file.",
    )

    @field_validator("resume", mode="before")
    @classmethod
    def _empty_means_fresh(cls, value: object) -> object:
        return False if value in ("", None) else value
