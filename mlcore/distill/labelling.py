"""Teacher labelling in shards: several workers fill one shared teacher-label cache before distillation reads it.

    trainer = DistillationTrainer(run_dir, mode, train=..., val=..., teachers_dir=..., teacher_cache="shared/cache")
    label_shard(trainer, Shard(0, 2))      # on one worker
    label_shard(trainer, Shard(1, 2))      # on another, with the same settings and folder
    trainer.run()                          # every label is read from the folder: no teacher call

A shard is every n-th of exactly the images distillation trains on (`DistillationTrainer.teacher_labelling`: the same
images, prompts and cache keys). Cache files are named by content and written atomically (temp file, then rename), so
workers never collide, and a shard that runs again labels only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mlcore.distill.trainer import DistillationTrainer
from mlcore.evaluation.shards import Shard, worker_name


@dataclass
class LabelledShard:
    """What one labelling shard did: images in it, how many the teachers labelled now (the rest were on disk)."""

    index: int
    count: int
    images: int
    labelled: int
    cache_dir: Path
    seconds: float
    worker: str  # host:pid


def label_shard(trainer: DistillationTrainer, shard: Shard) -> LabelledShard:
    """Fill `trainer`'s teacher cache for `shard`'s part of its training images; no training."""
    started = time.perf_counter()
    _, cache, items = trainer.teacher_labelling()
    mine = shard.pick(items)
    labelled = cache.fill([trainer.label_request(item) for item in mine])
    return LabelledShard(shard.index, shard.count, len(mine), labelled, cache.folder, time.perf_counter() - started,
                         worker_name())
