"""From `train-student`'s options to a `DistillationTrainer`: mode, configs, student name and device.

    result = train_student("prepared/train.json", "prepared/val.json", "runs/student", teachers="runs/teachers",
                           student="yolov8n-seg", epochs=10, device="cpu")

Labelling can run first in shards on several workers, into a folder all of them and the distill step see:

    label_teacher_shard("prepared/train.json", "prepared/val.json", teachers="runs/teachers",
                        teacher_cache="shared/teacher_cache", shard=0, shards=2)      # and shard=1 elsewhere
    train_student(..., teacher_cache="shared/teacher_cache")                         # no teacher call left

Several GPUs of one machine train one student together (DDP, one process each; `devices=2` with `device="cpu"`
runs two CPU processes, a test mode):

    train_student(..., devices="0,1")          # or devices=2: cuda:0 and cuda:1

`--config` takes any of: one kd_* config (losses, ground-truth rule, unlabeled images), one student_* config
(architecture size, starting weights, imgsz/epochs/batch), one augmentation, one training_dynamics and one
checkpoint_config. Command-line options override what the files say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError

from mlcore.config import load_config
from mlcore.config.schemas.data import AugmentationConfig
from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig, KdSegmentationOnlyConfig
from mlcore.config.schemas.students import (StudentFastSamConfig, StudentTraining, StudentYolov8Config,
                                            StudentYolov8SegConfig)
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.distill.labelling import LabelledShard, label_shard
from mlcore.distill.records import DistillationResult
from mlcore.distill.trainer import (METRICS_JSON, STUDENT_JSON, DistillationTrainer, StepCallback,
                                    release_accelerator)
from mlcore.errors import ConfigError
from mlcore.evaluation.shards import Shard
from mlcore.training.distributed import DistributedContext, launch, resolve_devices
from mlcore.training.reproducibility import seed_everything
from mlcore.training.run_setup import resolve_device, resolve_mode

STUDENT_NAME = {"student_yolov8": "yolov8{size}", "student_yolov8_seg": "yolov8{size}-seg",
                "student_fastsam": "fastsam-{size}"}
ACCEPTED = {"kd_detection_only": "kd", "kd_segmentation_only": "kd", "kd_both": "kd", "student_yolov8": "student",
            "student_yolov8_seg": "student", "student_fastsam": "student", "augmentation": "augmentation",
            "training_dynamics": "dynamics", "checkpoint_config": "checkpointing"}


@dataclass
class StudentConfigs:
    kd: KdDetectionOnlyConfig | KdSegmentationOnlyConfig | KdBothConfig | None = None
    student: StudentYolov8Config | StudentYolov8SegConfig | StudentFastSamConfig | None = None
    augmentation: AugmentationConfig | None = None
    dynamics: TrainingDynamicsConfig | None = None
    checkpointing: CheckpointConfig | None = None
    sources: dict[str, Path] = field(default_factory=dict)


def student_configs(config_files: Sequence[str | Path] = ()) -> StudentConfigs:
    """At most one config of each role from the given files."""
    configs = StudentConfigs()
    for path in config_files:
        config = load_config(path)
        role = ACCEPTED.get(config.kind)
        if role is None:
            raise ConfigError(f"--config does not take a {config.kind} config here", where=str(path),
                              fix=f"pass configs of these kinds: {', '.join(ACCEPTED)}")
        if role in configs.sources:
            raise ConfigError(f"two {role} configs given ({configs.sources[role]} and {path})", where=str(path),
                              fix="pass one of each kind")
        setattr(configs, role, config)
        configs.sources[role] = Path(path)
    return configs


def student_training(base: StudentTraining, **overrides: int | None) -> StudentTraining:
    """`base` with the command line's values, checked by the same rules as a file (imgsz a multiple of 32, ...)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return StudentTraining.model_validate({**base.model_dump(), **given})
    except ValidationError as error:
        problem = error.errors()[0]
        option = {"batch": "--batch-size"}.get(str(problem["loc"][0]), f"--{problem['loc'][0]}")
        raise ConfigError(problem["msg"], where=option, fix="pass a valid value") from None


def train_student(data: str | Path, val: str | Path, output_dir: str | Path, *, teachers: str | Path,
                  auto_detect: bool = False, images: str | Path | None = None,
                  val_images: str | Path | None = None, student: str | None = None,
                  unlabeled: str | Path | None = None,
                  epochs: int | None = None, imgsz: int | None = None, batch_size: int | None = None,
                  device: str | None = None, gpu: int | None = None, config_files: Sequence[str | Path] = (),
                  resume: bool = False, progress: bool = True, on_step: StepCallback | None = None,
                  dynamics: TrainingDynamicsConfig | None = None,
                  teacher_cache: str | Path | None = None, devices: int | str | None = None) -> DistillationResult:
    """What `mlcore train-student` does: resolve mode, configs and device, then distil.

    images / val_images: the image folders of DATA and VAL (`--images`, `--val-images`; VAL's default: IMAGES);
    without them each file's images are where `validate` recorded them, else found beside it.
    teacher_cache: the teacher-label folder (default: the kd config's, else OUTPUT_DIR/teacher_cache).
    devices: several devices train together: a count, or GPU indices such as "0,1" (`--gpus`)."""
    if devices is not None and (gpu is not None or (device is not None and not isinstance(devices, int))):
        raise ConfigError(f"--gpus and --{'gpu' if gpu is not None else 'device'} both given", where="--gpus",
                          fix="pass one of them")
    on = resolve_devices(devices, device) if devices is not None else None
    trainer = distillation_trainer(data, val, output_dir, teachers=teachers, auto_detect=auto_detect,
                                   images=images, val_images=val_images,
                                   student=student, unlabeled=unlabeled, epochs=epochs, imgsz=imgsz,
                                   batch_size=batch_size, device=str(on[0]) if on else device, gpu=gpu,
                                   config_files=config_files, resume=resume, progress=progress, on_step=on_step,
                                   dynamics=dynamics, teacher_cache=teacher_cache)
    return distil_on_devices(trainer, on) if on is not None and len(on) > 1 else trainer.run()


def distil_on_devices(trainer: DistillationTrainer, devices: Sequence[torch.device]) -> DistillationResult:
    """`trainer.run()` on several devices: the teachers label every image here first, then one process per device
    trains (DDP) reading those labels, and rank 0 writes the run folder this result is read back from."""
    if trainer.on_step is not None:
        raise ConfigError("on_step cannot reach the training processes", where="on_step",
                          fix="leave it unset when training on several devices")
    trainer.output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(trainer.dynamics.seed, trainer.dynamics.deterministic)  # as `run` labels: the same teachers
    started = time.perf_counter()
    teachers, cache, items = trainer.teacher_labelling()
    cache.fill([trainer.label_request(item) for item in items])
    labelling = {"teacher_calls": cache.teacher_calls, "seconds": time.perf_counter() - started}
    release_accelerator(teachers)
    del teachers, cache
    launch(_distil_process, list(devices), trainer, labelling)
    return read_result(trainer.output_dir)


def _distil_process(context: DistributedContext, trainer: DistillationTrainer, labelling: dict[str, float]) -> None:
    trainer.device = context.device
    trainer.progress = trainer.progress and context.is_main
    trainer.run(distributed=context, labelling=labelling)


def read_result(output_dir: str | Path) -> DistillationResult:
    """The result a finished run wrote (student.json, metrics.json), e.g. by another process."""
    output_dir = Path(output_dir)
    summary = json.loads((output_dir / STUDENT_JSON).read_text(encoding="utf-8"))
    metrics = json.loads((output_dir / METRICS_JSON).read_text(encoding="utf-8"))
    best = summary["metrics"]["best"]
    return DistillationResult(output_dir, summary["mode"], summary["student"]["name"], best["metric"], best["value"],
                              best["epoch"], metrics["epochs"], metrics["teacher_labelling"]["teacher_calls"],
                              summary["data"]["pseudo_labelled_images"], summary)


def label_teacher_shard(data: str | Path, val: str | Path, *, teachers: str | Path, teacher_cache: str | Path,
                        shard: int, shards: int, images: str | Path | None = None,
                        val_images: str | Path | None = None, unlabeled: str | Path | None = None,
                        device: str | None = None, gpu: int | None = None, config_files: Sequence[str | Path] = (),
                        progress: bool = True) -> LabelledShard:
    """One worker's share of distillation's teacher labelling, into TEACHER_CACHE: give it the data, images,
    teachers, unlabeled images and configs the distill step gets, so the labels are the ones it will look for."""
    trainer = distillation_trainer(data, val, teacher_cache, teachers=teachers, images=images,
                                   val_images=val_images, unlabeled=unlabeled, device=device, gpu=gpu,
                                   config_files=config_files, progress=progress, teacher_cache=teacher_cache)
    return label_shard(trainer, Shard(shard, shards))


def distillation_trainer(data: str | Path, val: str | Path, output_dir: str | Path, *, teachers: str | Path,
                         auto_detect: bool = False, images: str | Path | None = None,
                         val_images: str | Path | None = None, student: str | None = None,
                         unlabeled: str | Path | None = None, epochs: int | None = None, imgsz: int | None = None,
                         batch_size: int | None = None, device: str | None = None, gpu: int | None = None,
                         config_files: Sequence[str | Path] = (), resume: bool = False, progress: bool = True,
                         on_step: StepCallback | None = None, dynamics: TrainingDynamicsConfig | None = None,
                         teacher_cache: str | Path | None = None) -> DistillationTrainer:
    """The `DistillationTrainer` these options describe (command-line values over the config files')."""
    output_dir = Path(output_dir)
    val_images = val_images if val_images is not None else images
    configs = student_configs(config_files)
    resolved_device = resolve_device(device, gpu)
    mode, train_file, val_file = resolve_mode(data, val, output_dir, auto_detect=auto_detect, images=images,
                                              val_images=val_images)
    training = student_training(configs.student.training if configs.student else StudentTraining(),
                                epochs=epochs, imgsz=imgsz, batch=batch_size)
    if student is None and configs.student is not None:
        student = STUDENT_NAME[configs.student.kind].format(size=configs.student.model.size)
    weights = configs.student.model.weights if configs.student else None
    return DistillationTrainer(output_dir, mode, train=train_file, val=val_file, teachers_dir=teachers, kd=configs.kd,
                               student=student, student_weights=weights, training=training,
                               augmentation=configs.augmentation, unlabeled_dir=unlabeled, train_images=images,
                               val_images=val_images, device=resolved_device,
                               resume=resume, dynamics=dynamics or configs.dynamics,
                               checkpointing=configs.checkpointing, progress=progress, on_step=on_step,
                               teacher_cache=teacher_cache)
