"""From `train-student`'s options to a `DistillationTrainer`: mode, configs, student name and device.

    result = train_student("prepared/train.json", "prepared/val.json", "runs/student", teachers="runs/teachers",
                           student="yolov8n-seg", epochs=10, device="cpu")

Labelling can run first in shards on several workers, into a folder all of them and the distill step see:

    label_teacher_shard("prepared/train.json", "prepared/val.json", teachers="runs/teachers",
                        teacher_cache="shared/teacher_cache", shard=0, shards=2)      # and shard=1 elsewhere
    train_student(..., teacher_cache="shared/teacher_cache")                         # no teacher call left

`--config` takes any of: one kd_* config (losses, ground-truth rule, unlabeled images), one student_* config
(architecture size, starting weights, imgsz/epochs/batch), one augmentation, one training_dynamics and one
checkpoint_config. Command-line options override what the files say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mlcore.config import load_config
from mlcore.config.schemas.data import AugmentationConfig
from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig, KdSegmentationOnlyConfig
from mlcore.config.schemas.students import (StudentFastSamConfig, StudentTraining, StudentYolov8Config,
                                            StudentYolov8SegConfig)
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.errors import ConfigError
from mlcore.evaluation.shards import Shard
from mlcore.training.distillation import DistillationResult, DistillationTrainer, StepCallback
from mlcore.training.labelling import LabelledShard, label_shard
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
                  auto_detect: bool = False, student: str | None = None, unlabeled: str | Path | None = None,
                  epochs: int | None = None, imgsz: int | None = None, batch_size: int | None = None,
                  device: str | None = None, gpu: int | None = None, config_files: Sequence[str | Path] = (),
                  resume: bool = False, progress: bool = True, on_step: StepCallback | None = None,
                  dynamics: TrainingDynamicsConfig | None = None,
                  teacher_cache: str | Path | None = None) -> DistillationResult:
    """What `mlcore train-student` does: resolve mode, configs and device, then distil.

    teacher_cache: the teacher-label folder (default: the kd config's, else OUTPUT_DIR/teacher_cache)."""
    return distillation_trainer(data, val, output_dir, teachers=teachers, auto_detect=auto_detect, student=student,
                                unlabeled=unlabeled, epochs=epochs, imgsz=imgsz, batch_size=batch_size, device=device,
                                gpu=gpu, config_files=config_files, resume=resume, progress=progress,
                                on_step=on_step, dynamics=dynamics, teacher_cache=teacher_cache).run()


def label_teacher_shard(data: str | Path, val: str | Path, *, teachers: str | Path, teacher_cache: str | Path,
                        shard: int, shards: int, unlabeled: str | Path | None = None, device: str | None = None,
                        gpu: int | None = None, config_files: Sequence[str | Path] = (),
                        progress: bool = True) -> LabelledShard:
    """One worker's share of distillation's teacher labelling, into TEACHER_CACHE: give it the data, teachers,
    unlabeled images and configs the distill step gets, so the labels are the ones it will look for."""
    trainer = distillation_trainer(data, val, teacher_cache, teachers=teachers, unlabeled=unlabeled, device=device,
                                   gpu=gpu, config_files=config_files, progress=progress,
                                   teacher_cache=teacher_cache)
    return label_shard(trainer, Shard(shard, shards))


def distillation_trainer(data: str | Path, val: str | Path, output_dir: str | Path, *, teachers: str | Path,
                         auto_detect: bool = False, student: str | None = None,
                         unlabeled: str | Path | None = None, epochs: int | None = None, imgsz: int | None = None,
                         batch_size: int | None = None, device: str | None = None, gpu: int | None = None,
                         config_files: Sequence[str | Path] = (), resume: bool = False, progress: bool = True,
                         on_step: StepCallback | None = None, dynamics: TrainingDynamicsConfig | None = None,
                         teacher_cache: str | Path | None = None) -> DistillationTrainer:
    """The `DistillationTrainer` these options describe (command-line values over the config files')."""
    output_dir = Path(output_dir)
    configs = student_configs(config_files)
    resolved_device = resolve_device(device, gpu)
    mode, train_file, val_file = resolve_mode(data, val, output_dir, auto_detect=auto_detect)
    training = student_training(configs.student.training if configs.student else StudentTraining(),
                                epochs=epochs, imgsz=imgsz, batch=batch_size)
    if student is None and configs.student is not None:
        student = STUDENT_NAME[configs.student.kind].format(size=configs.student.model.size)
    weights = configs.student.model.weights if configs.student else None
    return DistillationTrainer(output_dir, mode, train=train_file, val=val_file, teachers_dir=teachers, kd=configs.kd,
                               student=student, student_weights=weights, training=training,
                               augmentation=configs.augmentation, unlabeled_dir=unlabeled, device=resolved_device,
                               resume=resume, dynamics=dynamics or configs.dynamics,
                               checkpointing=configs.checkpointing, progress=progress, on_step=on_step,
                               teacher_cache=teacher_cache)
