"""Checkpoints on disk: atomic files with a JSON sidecar, the last K kept, `best` and `latest`, an exact resume.

Layout of `save_dir`:

    epoch-0004.pt + .json       end of epoch 4 (0-based; resumes at epoch 5, batch 0); the last `keep_last_k` stay
    step-00001234.pt + .json    mid-epoch, after optimizer step 1234; only the newest, and only until an epoch ends
    best.pt + .json             the best epoch by `best_metric` (hard link or copy, apart from the K)
    latest.json                 names the newest complete checkpoint, for people and tools

A `.pt` is written to a temp file and renamed; its sidecar is written after it and records its size, so a checkpoint
counts only when both exist and agree: a run killed while saving leaves nothing `resume()` would pick up. A mid-epoch
checkpoint is taken only at an optimizer-step boundary (pending accumulated gradients are never saved).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlcore.config.schemas.training import CheckpointConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open, write_json_atomic
from mlcore.logs import get_logger
from mlcore.training.early_stopping import MetricTracker
from mlcore.training.manager import TrainingManager
from mlcore.training.reproducibility import capture_rng_state, restore_rng_state

log = get_logger(__name__)

FORMAT = 1
BEST, LATEST = "best", "latest"


@dataclass(frozen=True)
class ResumeState:
    """Where the loop continues: epoch `epoch`, starting at batch index `batch` (0 unless resumed mid-epoch)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    stopped: bool = False  # the checkpointed run had already stopped early
    checkpoint: Path | None = None  # None: a fresh start

    def start_batch(self, epoch: int) -> int:
        """The first batch index to run in `epoch`."""
        return self.batch if epoch == self.epoch else 0

    def should_skip(self, epoch: int, batch: int) -> bool:
        """True for the batches a resumed run already trained (only valid when loading them consumes no RNG)."""
        return epoch == self.epoch and batch < self.batch


@dataclass(frozen=True)
class EpochDecision:
    """What `end_epoch` concluded."""

    epoch: int
    value: float  # this epoch's best_metric
    improved: bool
    best: float | None
    best_epoch: int | None
    epochs_without_improvement: int
    stop: bool  # early stopping: patience ran out
    saved: Path | None  # the epoch checkpoint written, if any


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def order(self) -> tuple[int, int, int]:
        return self.meta["global_step"], self.meta["resume_at"]["epoch"], self.meta["resume_at"]["batch"]


def trainable_keys(model: nn.Module) -> list[str]:
    """`state_dict` names of every parameter that trains, plus the buffers of the modules owning one.

    For LoRA that is the adapter weights only, never the frozen base; a BatchNorm that trains brings its running
    statistics along, since they change with training too.
    """
    keys = []
    for prefix, module in model.named_modules():
        trained = [name for name, param in module.named_parameters(recurse=False) if param.requires_grad]
        if trained:
            buffers = [
                name for name, buffer in module.named_buffers(recurse=False)
                if buffer is not None and name not in module._non_persistent_buffers_set
            ]
            keys += [f"{prefix}.{name}" if prefix else name for name in trained + buffers]
    return keys


class CheckpointManager:
    """Saves and restores a training run per `CheckpointConfig`; only `keys` of the model are stored.

    Build it after the `TrainingManager` (which may freeze BatchNorm), so `keys` reflects what really trains.
    """

    def __init__(self, config: CheckpointConfig, model: nn.Module, *, keys: list[str] | None = None) -> None:
        self.config = config
        self.model = model
        self.save_dir = Path(config.save_dir)
        self.keys = list(keys) if keys is not None else trainable_keys(model)
        unknown = sorted(set(self.keys) - set(model.state_dict()))
        if unknown or not self.keys:
            raise ModelError(f"checkpoint keys not in the model: {unknown[:5]}" if unknown else "nothing to checkpoint")
        self.tracker = MetricTracker.from_config(config)
        self._last_step_saved: int | None = None

    @property
    def best_path(self) -> Path:
        return self.save_dir / f"{BEST}.pt"

    def checkpoints(self) -> list[CheckpointInfo]:
        """Complete epoch and mid-epoch checkpoints in `save_dir`, oldest first."""
        infos = [info for info in map(_complete, self.save_dir.glob("*.json")) if info is not None]
        return sorted((i for i in infos if i.kind in ("epoch", "step")), key=lambda info: info.order)

    # -- resuming ------------------------------------------------------------------------------------------------

    def resume(self, manager: TrainingManager) -> ResumeState:
        """Per `config.resume`: a fresh start, the newest complete checkpoint in `save_dir`, or a given file.

        Restores the trainable tensors, optimizer/scheduler/scaler, RNG states and best/early-stopping progress.
        """
        for temp in self.save_dir.glob(".*.tmp"):  # left by a run killed while saving
            temp.unlink(missing_ok=True)
        resume = self.config.resume
        if resume is False:
            if self.checkpoints() or self.best_path.exists():
                raise ConfigError(
                    f"{self.save_dir} already holds checkpoints of an earlier run",
                    where="checkpoint_config.save_dir",
                    fix="set resume: true (or --resume) to continue it, or use an empty save_dir",
                )
            return ResumeState()
        if resume is True:
            candidates = [info.path for info in reversed(self.checkpoints())]
            if not candidates:
                log.info("no checkpoint in %s: starting fresh", self.save_dir)
                return ResumeState()
        else:
            if not Path(resume).is_file():
                raise ConfigError(f"checkpoint {resume} does not exist", where="checkpoint_config.resume",
                                  fix="give an existing .pt file, or true for the newest in save_dir")
            candidates = [Path(resume)]
        for path in candidates:
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated or corrupt: fall back to the next older one
                log.warning("cannot read checkpoint %s (%s); trying an older one", path, exc)
                continue
            return self._restore(payload, manager, path)
        raise ConfigError(
            f"no readable checkpoint among {[str(p) for p in candidates]}", where="checkpoint_config.resume",
            fix="delete the damaged checkpoints, or set resume: false with an empty save_dir",
        )

    def _restore(self, payload: dict[str, Any], manager: TrainingManager, path: Path) -> ResumeState:
        if payload.get("format") != FORMAT:
            raise ModelError(f"unknown checkpoint format {payload.get('format')!r}", where=str(path))
        self._load_tensors(payload["model"], path)
        manager.load_state_dict(payload["training"])
        self.tracker.load_state_dict(payload["tracker"])
        if payload.get("rng") is not None:
            restore_rng_state(payload["rng"])
        else:
            log.warning("%s has no RNG state (save_rng_state: false): the resumed run will differ", path.name)
        progress = payload["progress"]
        self._last_step_saved = manager.global_step
        state = ResumeState(progress["epoch"], progress["batch"], manager.global_step, self.tracker.stopped, path)
        log.info("resumed from %s: epoch %d, batch %d, step %d", path.name, state.epoch, state.batch, state.global_step)
        return state

    def _load_tensors(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        missing = sorted(set(self.keys) - set(tensors))
        unexpected = sorted(set(tensors) - set(self.model.state_dict()))
        if missing or unexpected:
            raise ModelError(
                f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}",
                where=str(path), fix="resume with the same model and adapter settings the checkpoint was trained with",
            )
        try:
            self.model.load_state_dict(tensors, strict=False)
        except RuntimeError as exc:  # shape mismatch
            raise ModelError(f"checkpoint does not match the model: {exc}", where=str(path)) from exc

    # -- saving --------------------------------------------------------------------------------------------------

    def maybe_save_step(self, epoch: int, batch: int, manager: TrainingManager) -> Path | None:
        """After batch `batch` of `epoch`: save every `save_every_n_steps` optimizer steps, at step boundaries only."""
        every = self.config.save_every_n_steps
        step = manager.global_step
        if every is None or not manager.at_step_boundary or step % every or step == self._last_step_saved:
            return None
        self._last_step_saved = step
        path = self._save(manager, f"step-{step:08d}", "step", epoch=epoch, resume_at=(epoch, batch + 1))
        self._prune()
        return path

    def end_epoch(
        self, epoch: int, metrics: dict[str, Any], manager: TrainingManager, *, final: bool = False
    ) -> EpochDecision:
        """Track the best, save on the interval (and always when `final` or stopping), prune, decide on stopping."""
        if not manager.at_step_boundary:
            raise RuntimeError("call manager.flush() before end_epoch: a partial accumulation window is pending")
        improved = self.tracker.update(epoch, metrics)
        stop = self.tracker.stopped
        saved = None
        if (epoch + 1) % self.config.save_every_n_epochs == 0 or final or stop:
            saved = self._save(manager, f"epoch-{epoch:04d}", "epoch", epoch=epoch, resume_at=(epoch + 1, 0),
                               metrics=metrics)
        if improved and saved is not None:
            self._copy_as_best(saved)
        elif improved:
            self._save(manager, BEST, "best", epoch=epoch, resume_at=(epoch + 1, 0), metrics=metrics)
        self._prune()
        tracker = self.tracker
        log.info(
            "epoch %d: %s %.6g (best %.6g at epoch %s)%s", epoch, tracker.metric, tracker.history[-1][tracker.metric],
            tracker.best if tracker.best is not None else float("nan"), tracker.best_epoch,
            f"; no improvement for {tracker.epochs_without_improvement}: stopping" if stop else "",
        )
        return EpochDecision(
            epoch, tracker.history[-1][tracker.metric], improved, tracker.best, tracker.best_epoch,
            tracker.epochs_without_improvement, stop, saved,
        )

    def _save(
        self, manager: TrainingManager, name: str, kind: str, *, epoch: int, resume_at: tuple[int, int],
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        config = self.config
        training = manager.state_dict()
        for part, keep in (("optimizer", config.save_optimizer_state), ("scheduler", config.save_scheduler_state),
                           ("scaler", config.save_scaler_state)):
            if not keep:
                training[part] = None
        state = self.model.state_dict()
        tensors = {key: state[key] for key in self.keys}
        payload = {
            "format": FORMAT,
            "model": tensors,
            "training": training,
            "rng": capture_rng_state() if config.save_rng_state else None,
            "tracker": self.tracker.state_dict(),
            "progress": {"epoch": resume_at[0], "batch": resume_at[1], "global_step": manager.global_step},
        }
        path = self.save_dir / f"{name}.pt"
        with atomic_open(path) as handle:
            torch.save(payload, handle)
        tracker = self.tracker
        meta = {
            "checkpoint": path.name,
            "kind": kind,
            "bytes": path.stat().st_size,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epoch": epoch,
            "global_step": manager.global_step,
            "resume_at": {"epoch": resume_at[0], "batch": resume_at[1]},
            "lr": manager.lr,
            "precision": manager.precision.name,
            "trainable_tensors": len(tensors),
            "trainable_values": sum(t.numel() for t in tensors.values()),
            "contents": [part for part, value in payload.items() if value is not None and part != "format"],
            "metrics": tracker.history[-1] if metrics is not None else None,
            "best": {
                "metric": tracker.metric, "mode": tracker.mode, "value": tracker.best, "epoch": tracker.best_epoch,
            },
            "early_stopping": {"patience": tracker.patience, "min_delta": tracker.min_delta,
                               "epochs_without_improvement": tracker.epochs_without_improvement,
                               "stopped": tracker.stopped},
            "history": tracker.history,
        }
        write_json_atomic(path.with_suffix(".json"), meta)
        if kind != "best":
            write_json_atomic(self.save_dir / f"{LATEST}.json", {"checkpoint": path.name, **{
                k: meta[k] for k in ("kind", "saved_at", "epoch", "global_step", "resume_at")}})
        return path

    def _copy_as_best(self, source: Path) -> None:
        # A hard link costs no space and survives the source being pruned; copy where links are not supported.
        temp = self.save_dir / f".{BEST}.pt.{os.getpid()}.tmp"
        try:
            temp.unlink(missing_ok=True)
            os.link(source, temp)
            os.replace(temp, self.best_path)
        except OSError:
            with open(source, "rb") as src, atomic_open(self.best_path) as dst:
                shutil.copyfileobj(src, dst)
        meta = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))
        write_json_atomic(self.best_path.with_suffix(".json"), {**meta, "checkpoint": self.best_path.name,
                                                                "kind": "best", "copy_of": source.name})

    def _prune(self) -> None:
        infos = self.checkpoints()
        epochs = [info for info in infos if info.kind == "epoch"]
        steps = [info for info in infos if info.kind == "step"]
        doomed = epochs[: -self.config.keep_last_k] + steps[:-1]
        # A mid-epoch checkpoint only serves crash recovery: once an epoch checkpoint is newer, it is not needed.
        if steps and epochs and steps[-1].order <= epochs[-1].order:
            doomed.append(steps[-1])
        for info in doomed:
            info.path.with_suffix(".json").unlink(missing_ok=True)  # sidecar first: the .pt alone never counts
            info.path.unlink(missing_ok=True)


def _complete(sidecar: Path) -> CheckpointInfo | None:
    """The checkpoint a sidecar describes, if its .pt exists with the recorded size."""
    if sidecar.name == f"{LATEST}.json":
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = CheckpointInfo(sidecar.with_suffix(".pt"), json.loads(sidecar.read_text(encoding="utf-8")))
        if info.kind and info.order and info.path.is_file() and info.path.stat().st_size == info.meta["bytes"]:
            return info
    return None
