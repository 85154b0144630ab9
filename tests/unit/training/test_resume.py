"""A run killed mid-epoch and resumed from scratch ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mlcore.training import CheckpointManager, ResumeState, TrainingManager, epoch_loader, seed_everything
from tests.unit.training.conftest import checkpointing, dynamics, mlp, regression_data

EPOCHS, BATCH, SEED = 3, 4, 7
KILL_AT_STEP = 4  # a mid-epoch checkpoint in epoch 1, after its batch 1 (steps: 3 per epoch, saved every 2)


class NoisyPoints(Dataset):
    """Regression samples with fresh noise on every access (global torch RNG), like random augmentation."""

    def __init__(self, count: int) -> None:
        self.x, self.y = regression_data(count)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


def train(save_dir: Path, *, resume: bool = False, kill_at_step: int | None = None, save_rng_state: bool = True):
    """The loop a trainer runs, built from nothing each call (as a new process would); returns (weights, state)."""
    seed_everything(SEED)
    model = mlp(batchnorm=True, dropout=0.3)
    loader = epoch_loader(NoisyPoints(18), BATCH, SEED)  # 5 batches (4, 4, 4, 4, 2)
    manager = TrainingManager(
        model, model.parameters(),
        dynamics(scheduler="cosine", warmup_steps=2, grad_accum_steps=2, clip_grad_norm=1.0, weight_decay=0.01),
        device="cpu", batches_per_epoch=len(loader), epochs=EPOCHS,
    )
    ckpt = CheckpointManager(
        checkpointing(save_dir, save_every_n_steps=2, best_metric="val_loss", best_mode="min", resume=resume,
                      save_rng_state=save_rng_state, early_stopping={"enabled": False}),
        model,
    )
    state = ckpt.resume(manager)
    val_x, val_y = regression_data(8, seed=1)
    for epoch in range(state.epoch, EPOCHS):
        manager.train()
        start = state.start_batch(epoch)
        loader.sampler.set_epoch(epoch, skip=start * BATCH)
        for index, (x, y) in enumerate(loader, start=start):
            manager.training_step(lambda: F.mse_loss(model(x), y))
            if ckpt.maybe_save_step(epoch, index, manager) and manager.global_step == kill_at_step:
                return None, state  # killed: every object is thrown away
        manager.flush()
        manager.eval()
        with torch.no_grad():
            val_loss = F.mse_loss(model(val_x), val_y).item()
        ckpt.end_epoch(epoch, {"val_loss": val_loss}, manager, final=epoch == EPOCHS - 1)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}, state


def test_a_run_killed_mid_epoch_resumes_to_bit_identical_weights(tmp_path) -> None:
    reference, _ = train(tmp_path / "straight")
    killed, _ = train(tmp_path / "killed", kill_at_step=KILL_AT_STEP)
    assert killed is None
    resumed, state = train(tmp_path / "killed", resume=True)

    assert (state.epoch, state.batch, state.global_step) == (1, 2, KILL_AT_STEP)  # really mid-epoch
    assert state.checkpoint is not None and state.checkpoint.name == f"step-{KILL_AT_STEP:08d}.pt"
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name


def test_without_the_rng_state_the_resumed_run_differs(tmp_path) -> None:
    # Control for the test above: dropout and data noise make the RNG matter, so its restoration is what is tested.
    reference, _ = train(tmp_path / "straight")
    train(tmp_path / "killed", kill_at_step=KILL_AT_STEP, save_rng_state=False)
    resumed, _ = train(tmp_path / "killed", resume=True, save_rng_state=False)
    assert any(not torch.equal(resumed[name], reference[name]) for name in reference)


def test_resume_state_skips_exactly_the_batches_already_done() -> None:
    state = ResumeState(epoch=2, batch=3)
    assert [state.start_batch(e) for e in (2, 3)] == [3, 0]
    assert [b for b in range(6) if state.should_skip(2, b)] == [0, 1, 2]
    assert not any(state.should_skip(3, b) for b in range(6))
