"""Data order that depends only on (seed, epoch), so a resumed run meets the same batches and can start mid-epoch.

A plain `DataLoader(shuffle=True)` draws its order from the global torch RNG when each epoch starts; a run resumed
mid-epoch cannot replay that draw. Here the order is a pure function of (seed, epoch), and the batches already done
are skipped by index, never loaded, so random augmentation in `__getitem__` (global RNG, restored from the checkpoint)
sees exactly the calls it would have seen. With `num_workers > 0` each worker has its own RNG: the order is still
exact, augmentation randomness after a mid-epoch resume is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, epoch); `stream` separates independent uses within one epoch."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """Indices 0..size-1, shuffled by (seed, epoch); `set_epoch(epoch, skip=n)` starts that epoch at its n-th sample."""

    def __init__(self, size: int, seed: int, *, shuffle: bool = True) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.skip = 0
        # Pass this as the DataLoader's generator: worker seeds then come from (seed, epoch), not the global RNG,
        # and starting an epoch does not consume the global RNG (which a resumed run could not replay).
        self.generator = torch.Generator()
        self.generator.manual_seed(epoch_seed(seed, 0, stream=1))

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if not 0 <= skip <= self.size:
            raise ValueError(f"skip={skip} outside 0..{self.size}")
        self.epoch, self.skip = epoch, skip
        self.generator.manual_seed(epoch_seed(self.seed, epoch, stream=1))

    def order(self, epoch: int) -> list[int]:
        """The full order of `epoch`, before skipping."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.skip :])

    def __len__(self) -> int:
        return self.size - self.skip


def epoch_loader(
    dataset: Dataset, batch_size: int, seed: int, *, shuffle: bool = True, **loader_kwargs: Any
) -> DataLoader:
    """A DataLoader over an `EpochSampler` (`loader.sampler`); call `loader.sampler.set_epoch(epoch, skip)` per epoch.

    `skip` counts samples: to start at batch `b`, pass `b * batch_size`. `len(dataset)` must be known.
    """
    sampler = EpochSampler(len(dataset), seed, shuffle=shuffle)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=sampler.generator, **loader_kwargs)

