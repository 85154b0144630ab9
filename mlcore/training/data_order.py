"""Data order that depends only on (seed, epoch), so a resumed run meets the same batches and can start mid-epoch.

A plain `DataLoader(shuffle=True)` draws its order from the global torch RNG when each epoch starts; a run resumed
mid-epoch cannot replay that draw. Here the order is a pure function of (seed, epoch), and the batches already done
are skipped by index, never loaded, so random augmentation in `__getitem__` (global RNG, restored from the checkpoint)
sees exactly the calls it would have seen. With `num_workers > 0` each worker has its own RNG: the order is still
exact, augmentation randomness after a mid-epoch resume is not.

Several processes (`rank` of `world_size`) each take every world_size-th sample of the same epoch order, padded by
wrapping around so every rank has as many batches as the others (DDP needs that; like `DistributedSampler`).
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
    """Indices 0..size-1, shuffled by (seed, epoch); `set_epoch(epoch, skip=n)` starts that epoch at its n-th sample.

    With `world_size` > 1 it yields rank `rank`'s shard and `size` is the shard's length (`dataset_size` the whole).
    """

    def __init__(self, size: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.dataset_size = size
        self.rank, self.world_size = rank, world_size
        self.size = -(-size // world_size)  # every rank the same count
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
        """The full order of `epoch` (this rank's shard of it), before skipping."""
        if not self.shuffle:
            order = list(range(self.dataset_size))
        else:
            generator = torch.Generator()
            generator.manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        if self.world_size == 1:
            return order
        padded = (order * self.world_size)[: self.size * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.skip :])

    def __len__(self) -> int:
        return self.size - self.skip


def epoch_loader(
    dataset: Dataset, batch_size: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1,
    **loader_kwargs: Any
) -> DataLoader:
    """A DataLoader over an `EpochSampler` (`loader.sampler`); call `loader.sampler.set_epoch(epoch, skip)` per epoch.

    `skip` counts samples: to start at batch `b`, pass `b * batch_size`. `len(dataset)` must be known. `rank` and
    `world_size`: this process's shard of each epoch.
    """
    sampler = EpochSampler(len(dataset), seed, shuffle=shuffle,  # type: ignore[arg-type]
                           rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=sampler.generator, **loader_kwargs)

