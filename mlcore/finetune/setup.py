"""From `train-teacher`'s options to a `TeacherTrainer`: find the mode config, pick the configs and the device.

    result = train_teachers("prepared/train.json", "prepared/val.json", "runs/teachers", preset="tiny", device="cpu")

The mode comes from the `.mode_config.json` that `mlcore validate` wrote beside the data, or, with auto_detect,
from running the validate step into `<output>/dataset/` (the cleaned copies are then what trains).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlcore.config import load_config
from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.errors import ConfigError, MlcoreError
from mlcore.finetune.records import TeacherTrainingResult
from mlcore.finetune.trainer import StepCallback, TeacherTrainer
from mlcore.teachers.presets import GROUNDING_DINO_PRESETS, SAM_PRESETS, get_preset
from mlcore.teachers.weights import random_base, read_base_weights, resolve_weights_folder
from mlcore.training.run_setup import resolve_device, resolve_mode

TeacherConfigs = tuple[TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig]


def teacher_configs(config_files: Sequence[str | Path] = (), *, preset: str | None = None, epochs: int | None = None,
                    batch_size: int | None = None) -> TeacherConfigs:
    """The two teacher configs: from the given files (at most one of each kind), else defaults; then overrides."""
    dino, sam = TeacherGroundingDinoLoraConfig(), TeacherSamLoraConfig()
    seen: set[str] = set()
    for path in config_files:
        config = load_config(path)
        if not isinstance(config, (TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig)):
            raise ConfigError(f"--config takes teacher configs, this one is kind {config.kind!r}", where=str(path),
                              fix="pass teacher_grounding_dino_lora and/or teacher_sam_lora files")
        if config.kind in seen:
            raise ConfigError(f"two {config.kind} configs given", where=str(path), fix="pass one of each kind")
        seen.add(config.kind)
        if isinstance(config, TeacherGroundingDinoLoraConfig):
            dino = config
        else:
            sam = config
    if preset is not None:
        if preset in GROUNDING_DINO_PRESETS and preset in SAM_PRESETS:  # tiny, shapes: both teachers
            dino.model.preset, sam.model.preset = preset, preset
        elif preset in GROUNDING_DINO_PRESETS:
            dino.model.preset = preset
        elif preset in SAM_PRESETS:
            sam.model.preset = preset
        else:
            raise ConfigError(f"unknown teacher preset {preset!r}", where="--preset",
                              fix=f"use one of: {', '.join(dict.fromkeys([*GROUNDING_DINO_PRESETS, *SAM_PRESETS]))}")
        for family, config in (("grounding_dino", dino), ("sam", sam)):
            if config.model.preset == preset:  # the sizes that suit this preset (a small model wants a higher lr)
                for section, values in get_preset(family, preset).fine_tuning.items():
                    setattr(config, section, getattr(config, section).model_copy(update=values))
    for config in (dino, sam):
        if epochs is not None:
            config.training.epochs = epochs
        if batch_size is not None:
            config.training.batch_size = batch_size
    return dino, sam


def teacher_base_identities(config_files: Sequence[str | Path] = (), *, preset: str | None = None
                            ) -> dict[str, str]:
    """Per teacher family, the base weights the configs resolve to (`BaseWeights.cache_key`: revision and sha256,
    or the random-init seed), without loading a model: what a cached teacher-training result depends on besides its
    files and settings. Weights that cannot be found or read are "unavailable" (training then says why)."""
    identities = {}
    for config in teacher_configs(config_files, preset=preset):
        family = "grounding_dino" if isinstance(config, TeacherGroundingDinoLoraConfig) else "sam"
        chosen = get_preset(family, config.model.preset)
        if not chosen.needs_weights:
            identities[family] = random_base(chosen).cache_key
            continue
        try:
            folder = resolve_weights_folder(chosen, config.model.weights_dir)
            identities[family] = read_base_weights(folder, chosen).cache_key
        except MlcoreError:  # not there (yet): training says why; the key must not depend on where it looked
            identities[family] = "unavailable"
    return identities


def train_teachers(data: str | Path, val: str | Path, output_dir: str | Path, *, auto_detect: bool = False,
                   images: str | Path | None = None, val_images: str | Path | None = None,
                   preset: str | None = None, device: str | None = None, gpu: int | None = None,
                   epochs: int | None = None, batch_size: int | None = None,
                   config_files: Sequence[str | Path] = (), resume: bool = False,
                   dynamics: TrainingDynamicsConfig | None = None, checkpointing: CheckpointConfig | None = None,
                   progress: bool = True, on_step: StepCallback | None = None) -> TeacherTrainingResult:
    """What `mlcore train-teacher` does: resolve mode, configs and device, then train the teachers the mode needs.

    images: the folder DATA's file names are relative to (`--images`, the rule `validate` uses); val_images: VAL's
    (default: IMAGES). Without them each file's images are where `validate` recorded them, else found beside it."""
    output_dir = Path(output_dir)
    val_images = val_images if val_images is not None else images
    dino, sam = teacher_configs(config_files, preset=preset, epochs=epochs, batch_size=batch_size)
    resolved_device = resolve_device(device, gpu)
    mode, train_file, val_file = resolve_mode(data, val, output_dir, auto_detect=auto_detect, images=images,
                                              val_images=val_images)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer = TeacherTrainer(output_dir, mode, train=train_file, val=val_file, train_images=images,
                             val_images=val_images, grounding_dino=dino, sam=sam,
                             device=resolved_device, resume=resume, dynamics=dynamics, checkpointing=checkpointing,
                             progress=progress, on_step=on_step)
    return trainer.run()
