"""The training engine every trainer shares: steps, schedules, precision, checkpoints, resume, DDP.

    seed_everything(dynamics.seed, dynamics.deterministic)          # before building the model
    manager = TrainingManager(model, model.parameters(), dynamics, device=device,
                              batches_per_epoch=len(loader), epochs=epochs)
    ckpt = CheckpointManager(checkpointing, model)                  # stores only what trains (LoRA: adapters)
    state = ckpt.resume(manager)
    for epoch in range(state.epoch, epochs):
        manager.train()
        start = state.start_batch(epoch)
        loader.sampler.set_epoch(epoch, skip=start * batch_size)    # loader = epoch_loader(dataset, batch_size, seed)
        for batch_index, batch in enumerate(loader, start=start):
            manager.training_step(lambda: compute_loss(model, batch))
            ckpt.maybe_save_step(epoch, batch_index, manager)
        manager.flush()
        decision = ckpt.end_epoch(epoch, evaluate(model), manager, final=epoch == epochs - 1)
        if decision.stop:
            break

The rooms that use it: `mlcore.finetune` (LoRA on the teachers, what `mlcore train-teacher` runs) and
`mlcore.distill` (teacher labels -> a prompt-free student, what `mlcore train-student` runs). Nothing here knows
about teachers, students or losses.
"""

from mlcore.training.batchnorm import freeze_batchnorm
from mlcore.training.checkpoint import CheckpointManager, EpochDecision, ResumeState, trainable_keys
from mlcore.training.data_order import EpochSampler, epoch_loader
from mlcore.training.early_stopping import MetricTracker
from mlcore.training.manager import StepResult, TrainingManager
from mlcore.training.precision import Precision, resolve_precision
from mlcore.training.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from mlcore.training.scalars import TrainingScalars
from mlcore.training.schedule import build_scheduler, lr_factor

__all__ = [
    "CheckpointManager",
    "EpochDecision",
    "EpochSampler",
    "MetricTracker",
    "Precision",
    "ResumeState",
    "StepResult",
    "TrainingManager",
    "TrainingScalars",
    "build_scheduler",
    "capture_rng_state",
    "epoch_loader",
    "freeze_batchnorm",
    "lr_factor",
    "resolve_precision",
    "restore_rng_state",
    "seed_everything",
    "trainable_keys",
]
