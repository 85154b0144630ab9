"""Seeding, RNG snapshots and the (seed, epoch) data order that make an exact resume possible."""

from __future__ import annotations

import io
import random

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mlcore.training import EpochSampler, capture_rng_state, epoch_loader, restore_rng_state, seed_everything


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seed_everything_repeats_python_numpy_and_torch_and_sets_determinism() -> None:
    seed_everything(3, deterministic=True)
    first = _draws()
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(3)
    assert _draws() == first
    assert not torch.are_deterministic_algorithms_enabled()
    seed_everything(4)
    assert _draws() != first


def test_a_restored_rng_snapshot_replays_the_same_draws_after_a_torch_save_round_trip() -> None:
    seed_everything(0)
    _draws()
    buffer = io.BytesIO()
    torch.save(capture_rng_state(), buffer)
    expected = [_draws() for _ in range(3)]
    buffer.seek(0)
    restore_rng_state(torch.load(buffer, weights_only=True))
    assert [_draws() for _ in range(3)] == expected


def test_epoch_order_depends_only_on_seed_and_epoch_and_skip_drops_its_head() -> None:
    sampler = EpochSampler(10, seed=5)
    again = EpochSampler(10, seed=5)
    assert sorted(sampler.order(0)) == list(range(10))
    assert sampler.order(0) == again.order(0) and sampler.order(1) == again.order(1)
    assert sampler.order(0) != sampler.order(1) and sampler.order(0) != EpochSampler(10, seed=6).order(0)
    torch.manual_seed(123)  # the global RNG plays no part
    again.set_epoch(1, skip=4)
    assert list(again) == sampler.order(1)[4:] and len(again) == 6


def test_iterating_the_loader_leaves_the_global_rng_untouched() -> None:
    # A DataLoader without its own generator draws from the global RNG when each epoch starts, which a run resumed
    # mid-epoch could not replay.
    loader = epoch_loader(TensorDataset(torch.arange(10.0)), batch_size=3, seed=1)
    loader.sampler.set_epoch(0)
    before = torch.get_rng_state()
    batches = [batch[0].tolist() for batch in loader]
    assert torch.equal(torch.get_rng_state(), before)
    assert sorted(sum(batches, [])) == list(range(10))
    loader.sampler.set_epoch(0, skip=3)
    assert [batch[0].tolist() for batch in loader] == batches[1:]
