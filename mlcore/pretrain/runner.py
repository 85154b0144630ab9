"""The from-scratch training loop of the demo teachers: resumable, deterministic per step, evaluated as it goes.

Every step's data and dropout are functions of (seed, step), and the loop checkpoints model, optimizer and history
atomically, so a killed run resumes where it stopped and, on one thread, ends with the same weights as an unbroken one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from mlcore.io import atomic_open, write_json_atomic
from mlcore.logs import get_logger

log = get_logger(__name__)

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"


@dataclass(frozen=True)
class PretrainSpec:
    """What defines a run: the same spec and seed give the same weights on the same machine kind."""

    steps: int
    lr: float
    warmup: int = 300
    weight_decay: float = 1e-4
    clip: float = 1.0
    batch_size: int = 4
    seed: int = 0
    eval_every: int = 1000
    save_every: int = 200
    domain: str = "studio"  # the corpus (shapes_world domain) its steps draw from


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


def run_pretraining(model: nn.Module, loss_at: Callable[[int], torch.Tensor], spec: PretrainSpec, work_dir: Path,
                    evaluate: Callable[[nn.Module], dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Train `model` for spec.steps (loss_at(step) builds that step's loss); returns the evaluation history.

    work_dir keeps the checkpoint and history.json ({"step", "seconds", "loss", **evaluate(model)} per evaluation).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, spec.steps, spec.warmup))
    start, history, seconds = _resume(work_dir, spec, model, optimizer, scheduler)
    model.train()
    losses: list[float] = []
    clock = time.monotonic() - seconds
    progress = tqdm(range(start, spec.steps), initial=start, total=spec.steps, desc=f"pretrain {label}",
                    unit="step", mininterval=10)
    for step in progress:
        torch.manual_seed(spec.seed * 1_000_003 + step)  # dropout: a function of the step, as the data is
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % spec.eval_every == 0 or done == spec.steps:
            entry = {"step": done, "seconds": round(time.monotonic() - clock, 1),
                     "loss": round(sum(losses) / max(len(losses), 1), 4), **evaluate(model)}
            model.train()
            history.append(entry)
            losses.clear()
            log.info("%s step %d: %s", label, done, json.dumps(entry))
        if done % spec.save_every == 0 or done == spec.steps:
            _save(work_dir, spec, model, optimizer, scheduler, done, history, time.monotonic() - clock)
        progress.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    progress.close()
    return history


def _resume(work_dir: Path, spec: PretrainSpec, model: nn.Module, optimizer, scheduler
            ) -> tuple[int, list[dict[str, Any]], float]:
    path = work_dir / CHECKPOINT
    if not path.is_file():
        return 0, [], 0.0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["spec"] != asdict(spec):
        raise ValueError(f"{path} was written by another run (spec {state['spec']}); use another work folder or "
                         f"delete it to start again")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log.info("resuming %s at step %d", path, state["step"])
    return int(state["step"]), list(state["history"]), float(state["seconds"])


def _save(work_dir: Path, spec: PretrainSpec, model: nn.Module, optimizer, scheduler, step: int,
          history: list[dict[str, Any]], seconds: float) -> None:
    with atomic_open(work_dir / CHECKPOINT) as handle:
        torch.save({"spec": asdict(spec), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "history": history, "seconds": seconds},
                   handle)
    write_json_atomic(work_dir / HISTORY, history)
