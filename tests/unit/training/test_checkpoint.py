"""CheckpointManager: keep-last-K, best by metric, early stopping, half-written checkpoints, what gets stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcore.errors import ConfigError
from mlcore.training import CheckpointManager, TrainingManager, trainable_keys
from tests.unit.training.conftest import checkpointing, dynamics, mlp, regression_data


def _run(tmp_path: Path, model: nn.Module | None = None, **checkpoint_settings):
    model = model if model is not None else mlp()
    manager = TrainingManager(model, model.parameters(), dynamics(), device="cpu", batches_per_epoch=1, epochs=10)
    ckpt = CheckpointManager(checkpointing(tmp_path / "ckpt", **checkpoint_settings), model)
    return model, manager, ckpt


def _train_one_step(model: nn.Module, manager: TrainingManager) -> None:
    x, y = regression_data(4)
    assert manager.training_step(lambda: F.mse_loss(model(x), y)).stepped


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_keeps_the_last_k_epochs_plus_best_and_drops_mid_epoch_checkpoints_once_an_epoch_ends(tmp_path) -> None:
    model, manager, ckpt = _run(tmp_path, keep_last_k=2, save_every_n_steps=1)
    for epoch in range(5):
        _train_one_step(model, manager)
        step_file = ckpt.maybe_save_step(epoch, 0, manager)
        assert step_file is not None and step_file.exists()
        assert ckpt.maybe_save_step(epoch, 0, manager) is None  # same step: not saved twice
        ckpt.end_epoch(epoch, {"score": 1.0 if epoch == 1 else 0.0}, manager)
        assert not step_file.exists()

    assert _files(ckpt.save_dir) == [
        "best.json", "best.pt", "epoch-0003.json", "epoch-0003.pt", "epoch-0004.json", "epoch-0004.pt", "latest.json",
    ]
    assert json.loads((ckpt.save_dir / "latest.json").read_text())["checkpoint"] == "epoch-0004.pt"
    assert json.loads((ckpt.save_dir / "best.json").read_text())["copy_of"] == "epoch-0001.pt"


@pytest.mark.parametrize(
    ("mode", "scores", "save_every", "improved"),
    [
        ("max", [0.1, 0.5, 0.3, 0.7, 0.2], 1, [True, True, False, True, False]),
        ("min", [0.5, 0.2, 0.4, 0.1, 0.3], 1, [True, True, False, True, False]),
        ("max", [0.1, 0.2, 0.9, 0.3, 0.4], 2, [True, True, True, False, False]),  # best epoch 2: not on the interval
    ],
)
def test_best_checkpoint_holds_the_weights_of_the_best_epoch(tmp_path, mode, scores, save_every, improved) -> None:
    model, manager, ckpt = _run(tmp_path, keep_last_k=1, best_mode=mode, save_every_n_epochs=save_every)
    decisions = []
    for epoch, score in enumerate(scores):
        with torch.no_grad():
            model[0].weight.fill_(epoch)  # makes each epoch's weights recognisable
        decisions.append(ckpt.end_epoch(epoch, {"score": score, "loss": 1.0}, manager))

    best_epoch = max(epoch for epoch, better in enumerate(improved) if better)
    assert [d.improved for d in decisions] == improved
    decision = decisions[-1]
    assert decision.best == scores[best_epoch] and decision.best_epoch == best_epoch
    payload = torch.load(ckpt.best_path, weights_only=True)
    assert torch.all(payload["model"]["0.weight"] == best_epoch)
    meta = json.loads(ckpt.best_path.with_suffix(".json").read_text())
    assert meta["epoch"] == best_epoch and meta["best"] == {
        "metric": "score", "mode": mode, "value": scores[best_epoch], "epoch": best_epoch,
    }
    assert not (ckpt.save_dir / f"epoch-{best_epoch:04d}.pt").exists()  # pruned from the last K; best survives


def test_early_stopping_triggers_after_patience_epochs_without_improvement_beyond_min_delta(tmp_path) -> None:
    scores = [0.50, 0.54, 0.56, 0.61, 0.62, 0.63, 0.64]  # only 0.61 beats the best (0.50) by more than 0.1
    model, manager, ckpt = _run(
        tmp_path, save_every_n_epochs=100, early_stopping={"enabled": True, "patience": 3, "min_delta": 0.1}
    )
    decisions = [ckpt.end_epoch(epoch, {"score": s}, manager) for epoch, s in enumerate(scores)]

    assert [d.stop for d in decisions] == [False] * 6 + [True]
    assert [d.epochs_without_improvement for d in decisions] == [0, 1, 2, 0, 1, 2, 3]
    assert decisions[-1].best_epoch == 3 and decisions[-1].saved == ckpt.save_dir / "epoch-0006.pt"
    meta = json.loads((ckpt.save_dir / "epoch-0006.json").read_text())
    assert meta["early_stopping"]["stopped"] and [h["score"] for h in meta["history"]] == scores

    # Resuming the stopped run says so; with early stopping off the same scores never stop.
    _, manager2, ckpt2 = _run(tmp_path, resume=True, early_stopping={"enabled": True, "patience": 3})
    assert ckpt2.resume(manager2).stopped
    _, manager3, ckpt3 = _run(tmp_path / "off", early_stopping={"enabled": False})
    assert not any(ckpt3.end_epoch(e, {"score": s}, manager3).stop for e, s in enumerate(scores))


def test_a_missing_best_metric_names_the_available_ones(tmp_path) -> None:
    _, manager, ckpt = _run(tmp_path, best_metric="map50_95")
    with pytest.raises(ConfigError, match="map50_95") as error:
        ckpt.end_epoch(0, {"map50": 0.3, "loss": 1.2}, manager)
    assert "loss, map50" in str(error.value) and "checkpoint_config.best_metric" in str(error.value)
    assert not ckpt.save_dir.exists() or not any(ckpt.save_dir.iterdir())


def _damage_by_kill_during_torch_save(pt: Path) -> None:
    data = pt.read_bytes()
    pt.with_suffix(".json").unlink()
    pt.unlink()
    (pt.parent / f".{pt.name}.k1ll3d.tmp").write_bytes(data[: len(data) // 2])


def _damage_by_kill_before_sidecar(pt: Path) -> None:
    pt.with_suffix(".json").unlink()


def _damage_by_truncation(pt: Path) -> None:
    pt.write_bytes(pt.read_bytes()[:100])


def _damage_by_garbage_of_the_same_size(pt: Path) -> None:
    pt.write_bytes(b"\0" * pt.stat().st_size)


@pytest.mark.parametrize(
    "damage",
    [_damage_by_kill_during_torch_save, _damage_by_kill_before_sidecar, _damage_by_truncation,
     _damage_by_garbage_of_the_same_size],
    ids=["killed-in-torch-save", "killed-before-sidecar", "truncated", "garbage"],
)
def test_resume_ignores_a_half_written_checkpoint_and_takes_the_previous_one(tmp_path, damage) -> None:
    model, manager, ckpt = _run(tmp_path, save_every_n_steps=1)
    _train_one_step(model, manager)
    ckpt.end_epoch(0, {"score": 0.5}, manager)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    _train_one_step(model, manager)
    damage(ckpt.maybe_save_step(1, 0, manager))

    fresh, manager2, ckpt2 = _run(tmp_path, resume=True)
    state = ckpt2.resume(manager2)

    assert state.checkpoint == ckpt.save_dir / "epoch-0000.pt"
    assert (state.epoch, state.batch, state.global_step, manager2.global_step) == (1, 0, 1, 1)
    assert all(torch.equal(v, good[k]) for k, v in fresh.state_dict().items())
    assert not list(ckpt.save_dir.glob(".*.tmp"))
    # Listing (and so pruning to K) already leaves out what cannot be complete, without loading it.
    listed = [info.path.name for info in ckpt2.checkpoints()]
    assert listed == ["epoch-0000.pt"] + (["step-00000002.pt"] if damage is _damage_by_garbage_of_the_same_size else [])


def test_an_interrupted_save_leaves_no_file_behind(tmp_path, monkeypatch) -> None:
    model, manager, ckpt = _run(tmp_path)
    ckpt.end_epoch(0, {"score": 0.5}, manager)
    before = _files(ckpt.save_dir)

    def killed(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.end_epoch(1, {"score": 0.6}, manager)
    assert _files(ckpt.save_dir) == before


def test_a_fresh_run_refuses_a_save_dir_with_checkpoints_and_resume_true_on_an_empty_one_starts_fresh(tmp_path):
    _, manager, ckpt = _run(tmp_path, resume=True)
    state = ckpt.resume(manager)
    assert (state.epoch, state.batch, state.checkpoint) == (0, 0, None)
    ckpt.end_epoch(0, {"score": 0.5}, manager)
    _, manager2, ckpt2 = _run(tmp_path)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        ckpt2.resume(manager2)
    _, manager3, ckpt3 = _run(tmp_path, resume=tmp_path / "ckpt" / "nope.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        ckpt3.resume(manager3)


class _Adapted(nn.Module):
    """A frozen base layer with a trainable low-rank adapter, as LoRA leaves a model."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(4, 4)
        self.base.requires_grad_(False)
        self.lora_a = nn.Linear(4, 1, bias=False)
        self.lora_b = nn.Linear(1, 4, bias=False)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.base(x) + self.lora_b(self.lora_a(x))))


def test_only_trainable_tensors_are_stored_not_the_frozen_base(tmp_path) -> None:
    model = _Adapted()
    assert trainable_keys(model) == [
        "lora_a.weight", "lora_b.weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var",
        "norm.num_batches_tracked", "head.weight", "head.bias",
    ]
    model.norm.requires_grad_(False)
    assert trainable_keys(model) == ["lora_a.weight", "lora_b.weight", "head.weight", "head.bias"]

    _, manager, ckpt = _run(tmp_path, model=model)
    saved = ckpt.end_epoch(0, {"score": 1.0}, manager).saved
    assert sorted(torch.load(saved, weights_only=True)["model"]) == sorted(ckpt.keys)
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["trainable_tensors"] == 4 and meta["trainable_values"] == 4 + 4 + 8 + 2
