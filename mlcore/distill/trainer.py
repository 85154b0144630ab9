"""Distillation: the fine-tuned, prompted teachers teach a prompt-free ultralytics student.

    trainer = DistillationTrainer(run_dir, mode_config, train="train.json", val="val.json", teachers_dir="teachers/")
    result = trainer.run()      # best.pt, last.pt, student.json, metrics.json in run_dir

The teachers label every training image once (`TeacherTargetCache`, on disk: later epochs and resumed runs read it),
images without annotations included (`unlabeled_dir`); several workers can fill it first, a shard of the images
each (`mlcore.distill.labelling`), into a shared `teacher_cache` folder this run then only reads. Each epoch, every
image's targets (ground truth combined with the teachers' by the configured rule) are augmented with the image,
letterboxed, and the student learns from them through the mode-aware `DistillationLoss`. After every epoch the
student is scored on the validation split (COCO mAP) and saved as a normal ultralytics checkpoint; `resume=True`
continues from the newest checkpoint. On several devices (`mlcore.distill.setup.distil_on_devices`) one
process per device runs `run(distributed=...)`: DDP, a shard of each epoch each, rank 0 evaluating and writing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mlcore.augmentation import pipeline_from_config
from mlcore.augmentation.pipeline import AugmentationPipeline
from mlcore.config.schemas.data import AugmentationConfig
from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig, KdSegmentationOnlyConfig
from mlcore.config.schemas.students import StudentTraining
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.data.mode_config import ModeConfig
from mlcore.distill.batches import StudentBatchBuilder, without_spatial_transforms
from mlcore.distill.label_cache import LabelRequest, TeacherOutput, TeacherTargetCache
from mlcore.distill.losses import DistillationLoss
from mlcore.distill.records import DistillationResult, ImageTargets, TrainItem
from mlcore.distill.targets import combine_targets, find_unlabeled_images, ground_truth_targets
from mlcore.errors import ConfigError, DatasetError
from mlcore.evaluation.student_eval import evaluate_student
from mlcore.io import write_json_atomic
from mlcore.logs import get_logger
from mlcore.preprocess import load_rgb
from mlcore.students import Student, get_student_model, parse_student_name
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS, GroundedSAM
from mlcore.training.checkpoint import CheckpointManager, EpochDecision
from mlcore.training.data_order import epoch_loader
from mlcore.training.distributed import parameters_sha256
from mlcore.training.loop import run_epochs
from mlcore.training.manager import TrainingManager
from mlcore.training.reproducibility import seed_everything
from mlcore.training.run_setup import open_split

if TYPE_CHECKING:
    from mlcore.training.distributed import DistributedContext

log = get_logger(__name__)

KdConfig = KdDetectionOnlyConfig | KdSegmentationOnlyConfig | KdBothConfig
KD_CONFIG_OF_MODE: dict[str, type[KdConfig]] = {
    "detection_only": KdDetectionOnlyConfig, "segmentation_only": KdSegmentationOnlyConfig,
    "detection_and_segmentation": KdBothConfig}
DEFAULT_ADAMW_LR = 1e-3  # ultralytics' optimizer "auto" picks AdamW around this for small datasets
STUDENT_JSON = "student.json"
BATCHES = "_batches"  # counter key among the per-epoch loss component sums
METRICS_JSON = "metrics.json"
StepCallback = Callable[[int], None]  # optimizer steps so far, after every micro-batch


class StudentAndLoss(nn.Module):
    """The student's forward and its loss as one module: DDP wraps it once, so the loss's trainable adapters (feature
    distillation) get their gradients averaged over the processes along with the student's."""

    def __init__(self, trained: nn.ModuleDict) -> None:
        super().__init__()
        self.trained = trained

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        breakdown = self.trained["loss"](self.trained["student"](batch.images), batch)
        return breakdown.total, breakdown.components


def kd_config_for(mode: str, config: KdConfig | None) -> KdConfig:
    """The distillation config for this mode: the given one if its kind fits, else the mode's defaults."""
    expected = KD_CONFIG_OF_MODE[mode]
    if config is None:
        return expected()
    if not isinstance(config, expected):
        raise ConfigError(f"a {config.kind} config cannot distil a {mode} dataset", where="--config",
                          fix=f"use a {expected().kind} config (mlcore config list shows its template)")
    return config


class DistillationTrainer:
    """Teachers in `teachers_dir` (what `mlcore train-teacher` wrote) -> a student in `output_dir`.

    student: a name such as yolov8n, yolov8s-seg, fastsam-s (default: the mode config's recommendation).
    training: imgsz, epochs, batch, lr0 / optimizer, patience (the student template's `training` section).
    dynamics: schedule, warmup, seed, clipping, precision. on_step: called after every micro-batch (tests use it).
    teacher_cache: the teacher-label folder (default: the kd config's teacher_cache_dir, else OUTPUT/teacher_cache);
    labelling shards that wrote into it spare this run every teacher call. train_images / val_images: the splits'
    image folders (`--images`); default: where each file says, else the mode config's images_root.
    """

    def __init__(self, output_dir: str | Path, mode_config: ModeConfig, *, train: str | Path, val: str | Path,
                 teachers_dir: str | Path, kd: KdConfig | None = None, student: str | None = None,
                 student_weights: str | Path | None = None, training: StudentTraining | None = None,
                 augmentation: AugmentationConfig | None = None, unlabeled_dir: str | Path | None = None,
                 train_images: str | Path | None = None, val_images: str | Path | None = None,
                 teacher_weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
                 resume: bool = False, dynamics: TrainingDynamicsConfig | None = None,
                 checkpointing: CheckpointConfig | None = None, progress: bool = True,
                 on_step: StepCallback | None = None, teacher_cache: str | Path | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.mode = mode_config
        self.kd = kd_config_for(mode_config.annotation_mode, kd)
        self.student_name = student or mode_config.recommended_student
        self.student_weights = student_weights
        self.training = training or StudentTraining()
        self.augmentation = augmentation or AugmentationConfig()
        self.teachers_dir = Path(teachers_dir)
        self.teacher_weights_dir = teacher_weights_dir
        self.device = torch.device(device)
        self.resume = resume
        self.dynamics = dynamics or TrainingDynamicsConfig()
        self.checkpointing = checkpointing or CheckpointConfig()
        self.progress = progress
        self.on_step = on_step
        self.class_of_category = mode_config.class_of_category
        self.class_names = self._class_names()
        self.train_file, self.val_file = Path(train), Path(val)
        self.train_set = open_split(train, train_images, mode_config.images_root)
        self.val_set = open_split(val, val_images, mode_config.images_root)
        self.unlabeled_dir = unlabeled_dir or self.kd.data.unlabeled_images_dir
        self.with_masks = mode_config.annotation_mode != "detection_only"
        self.use_features = self.kd.losses.feature_distillation_loss.enabled
        self.teacher_cache_dir = Path(teacher_cache or self.kd.teacher_cache_dir or self.output_dir / "teacher_cache")

    # -- the run -------------------------------------------------------------------------------------------------

    def run(self, distributed: DistributedContext | None = None,
            labelling: dict[str, float] | None = None) -> DistillationResult:
        """Distil; `distributed`: this process's place among several (its device is `self.device`), `labelling`:
        teacher_calls and seconds of the labelling the launching process did first (for metrics.json)."""
        started = time.perf_counter()
        seed_everything(self.dynamics.seed, self.dynamics.deterministic)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        teachers, cache, items = self.teacher_labelling()
        labelling_started = time.perf_counter()
        cache.fill([self.label_request(item) for item in items])
        labelling_seconds = time.perf_counter() - labelling_started
        release_accelerator(teachers)  # every label is on disk now: the student gets the GPU memory

        kind, size, activation = parse_student_name(self.student_name)
        student = get_student_model(self.mode.annotation_mode, size, num_classes=len(self.class_names),
                                    weights=self.student_weights, class_names=self.class_names, kind=kind,
                                    activation=activation)
        student.model.to(self.device)
        teacher_channels = None
        if self.use_features:
            probe = self._teacher_output(cache, items[0])
            teacher_channels = None if probe.features is None else int(probe.features.shape[0])
        criterion = DistillationLoss(student.model, self.kd.losses, num_classes=student.num_classes,
                                     teacher_channels=teacher_channels).to(self.device)
        criterion.attach(student.model)
        trained = nn.ModuleDict({"student": student.model, "loss": criterion})
        forward = StudentAndLoss(trained) if distributed is None else distributed.wrap(StudentAndLoss(trained))
        samples_per_epoch: dict[int, int] = {}
        builder = StudentBatchBuilder(self.training.imgsz, num_classes=student.num_classes,
                                      augmentation=self._augmentation(), seed=self.dynamics.seed)

        def batch_loss(indices: list[int], epoch: int) -> torch.Tensor:
            examples = []
            for index in indices:
                item = items[index]
                targets = self._targets(item, cache, student)
                examples.append(builder.example(load_rgb(item.image_path), targets, epoch=epoch, index=index))
            batch = builder.collate(examples).to(self.device)
            total, components = forward(batch)
            component_totals.update({name: component_totals.get(name, 0.0) + float(value.detach())
                                     for name, value in components.items()})
            component_totals[BATCHES] = component_totals.get(BATCHES, 0.0) + 1
            samples_per_epoch[epoch] = samples_per_epoch.get(epoch, 0) + len(indices)
            return total

        component_totals: dict[str, float] = {}
        best_metric = "mask_map50_95" if student.task == "segment" else "map50_95"
        result = self._fit(student, trained, items, batch_loss, best_metric, component_totals, distributed)
        result.teacher_calls = cache.teacher_calls
        result.pseudo_labelled_images = sum(item.sample is None for item in items)
        processes = None
        if distributed is not None:
            processes = _processes_summary(distributed, distributed.gather({
                "device": str(self.device), "teacher_calls": cache.teacher_calls,
                "samples_per_epoch": samples_per_epoch, "student_sha256": parameters_sha256(trained)}))
            if not distributed.is_main:
                return result
            if labelling is not None:
                result.teacher_calls, labelling_seconds = int(labelling["teacher_calls"]), labelling["seconds"]
        result.summary = self._write_outputs(student, result, teachers, labelling_seconds,
                                             time.perf_counter() - started, len(items), processes)
        return result

    # -- data ----------------------------------------------------------------------------------------------------

    def teacher_labelling(self) -> tuple[GroundedSAM, TeacherTargetCache, list[TrainItem]]:
        """The teachers, their label cache and every image this run trains on, in a fixed order (what labelling
        shards split: they must label exactly the images, prompts and cache keys `run` will read)."""
        teachers = GroundedSAM.from_pretrained(self.teachers_dir, self.mode, weights_dir=self.teacher_weights_dir,
                                               device=self.device, box_threshold=self.kd.teacher_score_threshold,
                                               precision=self.kd.teacher_precision)
        cache = TeacherTargetCache(self.teacher_cache_dir, teachers, feature_source=self._feature_source(teachers),
                                   progress=self.progress)
        return teachers, cache, self._items(cache)

    def _class_names(self) -> list[str]:
        """The student's class names: the config's (a rename) when given, else the mode config's."""
        names = self.kd.data.class_names
        if names is None:
            return self.mode.class_names
        if len(names) != self.mode.num_classes:
            raise ConfigError(f"data.class_names has {len(names)} names, the dataset {self.mode.num_classes}",
                              where="data.class_names", fix="give one name per class, in the dataset's order")
        return list(names)

    def _feature_source(self, teachers: GroundedSAM) -> str | None:
        if not self.use_features:
            return None
        return "grounding_dino" if teachers.grounding_dino is not None else "sam"

    def _items(self, cache: TeacherTargetCache) -> list[TrainItem]:
        items = [TrainItem(self.train_set[index].image_path, self.train_set[index])
                 for index in range(len(self.train_set))]
        if self.unlabeled_dir is not None:
            unlabeled = find_unlabeled_images(self.unlabeled_dir)
            if not cache.can_label_without_boxes:
                log.warning("%d unlabeled image(s) in %s skipped: in %s mode only SAM is loaded, and SAM needs "
                            "boxes to prompt it (train a Grounding DINO teacher to label images from scratch)",
                            len(unlabeled), self.unlabeled_dir, self.mode.annotation_mode)
            else:
                known = {item.image_path.resolve() for item in items}
                items += [TrainItem(path) for path in unlabeled if path.resolve() not in known]
                log.info("%d unlabeled image(s) from %s join training with teacher labels", len(unlabeled),
                         self.unlabeled_dir)
        if not items:
            raise DatasetError("no training images", where=str(self.train_file), fix="check the split files")
        return items

    def label_request(self, item: TrainItem) -> LabelRequest:
        """(image, prompt boxes, their classes): SAM alone (segmentation_only) is prompted with the annotations."""
        if item.sample is not None and "grounding_dino" not in self.mode.recommended_teachers:
            truth = ground_truth_targets(item.sample, self.class_of_category, len(self.class_names),
                                         with_masks=False)
            return LabelRequest(item.image_path, truth.boxes, truth.class_ids)
        return LabelRequest(item.image_path)

    def _teacher_output(self, cache: TeacherTargetCache, item: TrainItem) -> TeacherOutput:
        request = self.label_request(item)
        return cache.get(request.image_path, request.boxes, request.class_ids)

    def _targets(self, item: TrainItem, cache: TeacherTargetCache, student: Student) -> ImageTargets:
        teacher = self._teacher_output(cache, item)
        truth = None if item.sample is None else ground_truth_targets(
            item.sample, self.class_of_category, len(self.class_names), with_masks=self.with_masks)
        targets = combine_targets(truth, teacher, rule=self.kd.ground_truth.rule,
                                  union_iou_threshold=self.kd.ground_truth.union_iou_threshold,
                                  score_threshold=self.kd.teacher_score_threshold,
                                  num_classes=len(self.class_names), with_masks=self.with_masks)
        if student.num_classes == 1 and len(self.class_names) > 1:  # FastSAM: one class, "object"
            targets.class_ids = targets.class_ids * 0
            targets.soft_scores = targets.soft_scores[:, :1] * float("nan")
        return targets

    def _augmentation(self) -> AugmentationPipeline | None:
        pipeline = pipeline_from_config(self.augmentation, mode=self.mode.annotation_mode)
        if self.use_features and any(t.spatial for t in pipeline.info.transforms):
            log.info("feature distillation: geometric augmentations (%s) are off, teacher features cannot follow "
                     "them", ", ".join(t.name for t in pipeline.info.transforms if t.spatial))
            return without_spatial_transforms(pipeline)
        return pipeline if pipeline.info.transforms else None

    # -- the loop ------------------------------------------------------------------------------------------------

    def _dynamics(self) -> TrainingDynamicsConfig:
        if self.training.optimizer == "SGD":
            raise ConfigError("the distillation trainer optimises with AdamW", where="training.optimizer",
                              fix="set optimizer: auto or AdamW")
        lr = self.training.lr0 if self.training.optimizer == "AdamW" else DEFAULT_ADAMW_LR
        precision = {True: "auto", False: "off"}.get(self.training.amp, self.dynamics.mixed_precision)  # type: ignore
        return self.dynamics.model_copy(update={"lr": lr, "mixed_precision": precision})

    def _fit(self, student: Student, trained: nn.Module, items: list[TrainItem],
             batch_loss: Callable[[list[int], int], torch.Tensor], best_metric: str,
             component_totals: dict[str, float], distributed: DistributedContext | None = None
             ) -> DistillationResult:
        dynamics = self._dynamics()
        epochs, batch_size = self.training.epochs, max(1, self.training.batch)
        rank, world = (0, 1) if distributed is None else (distributed.rank, distributed.world_size)
        # training.batch is the batch over all processes (as in ultralytics): the same steps per epoch on N devices.
        batch_size = max(1, batch_size // world)
        loader = epoch_loader(list(range(len(items))), batch_size, dynamics.seed, collate_fn=list, rank=rank,
                              world_size=world)
        manager = TrainingManager(trained, trained.parameters(), dynamics, device=self.device,
                                  batches_per_epoch=len(loader), epochs=epochs, distributed=distributed)
        early = self.checkpointing.early_stopping.model_copy(update={"patience": max(1, self.training.patience),
                                                                     "enabled": self.training.patience > 0})
        ckpt = CheckpointManager(self.checkpointing.model_copy(update={
            "save_dir": self.output_dir / "checkpoints", "best_metric": best_metric, "best_mode": "max",
            "resume": self.resume, "early_stopping": early}), trained)
        state = ckpt.resume(manager)

        def epoch_extras() -> dict[str, float]:
            """Each loss component's mean over the epoch's batches (then reset for the next epoch)."""
            batches = max(1, component_totals.pop(BATCHES, 0.0))
            means = {f"loss_{name}": total / batches for name, total in component_totals.items()}
            component_totals.clear()
            return means

        def on_epoch_end(epoch: int, record: dict[str, float], decision: EpochDecision) -> None:
            self._save_student(student, "last.pt", epoch, record)
            if decision.improved or not (self.output_dir / "best.pt").is_file():
                self._save_student(student, "best.pt", epoch, record)

        run_epochs(name="student", manager=manager, ckpt=ckpt, state=state, loader=loader, epochs=epochs,
                   batch_loss=batch_loss,
                   evaluate=lambda: evaluate_student(student, self.val_set, self.val_file, self.mode.category_ids,
                                                     imgsz=self.training.imgsz),
                   tensorboard_dir=self.output_dir / "tensorboard", progress=self.progress, on_step=self.on_step,
                   epoch_extras=epoch_extras, on_epoch_end=on_epoch_end, distributed=distributed)
        tracker = ckpt.tracker
        return DistillationResult(self.output_dir, self.mode.annotation_mode, self.student_name, tracker.metric,
                                  tracker.best, tracker.best_epoch, list(tracker.history), 0, 0)

    # -- outputs -------------------------------------------------------------------------------------------------

    def _save_student(self, student: Student, name: str, epoch: int, metrics: dict[str, float]) -> None:
        student.save(self.output_dir / name, imgsz=self.training.imgsz, extra={"epoch": epoch, "metrics": metrics,
                                                    "class_mapping": self._class_mapping(student),
                                                    "mode": self.mode.annotation_mode})

    def _class_mapping(self, student: Student) -> dict[str, str]:
        return {str(index): name for index, name in enumerate(student.class_names)}

    def _write_outputs(self, student: Student, result: DistillationResult, teachers: GroundedSAM,
                       labelling_seconds: float, total_seconds: float, images: int,
                       processes: dict[str, Any] | None = None) -> dict[str, Any]:
        if not result.best_path.is_file() and result.last_path.is_file():
            shutil.copyfile(result.last_path, result.best_path)
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        summary = {
            "mode": self.mode.annotation_mode,
            "student": {"name": self.student_name, "kind": student.kind, "size": student.size, "task": student.task,
                        "activation": student.activation, "imgsz": self.training.imgsz,
                        "weights": {"best": str(result.best_path), "last": str(result.last_path)}},
            "class_mapping": self._class_mapping(student),
            "teachers": {family: {"adapter": str(self.teachers_dir / TEACHER_FOLDERS[family]), "preset": teacher.preset.name,
                                  "adapter_sha256": teacher.adapter.adapter_sha256 if teacher.adapter else None}
                         for family, teacher in teachers.teachers.items()},
            "distillation": self.kd.model_dump(mode="json"),
            "metrics": {"best": {"metric": result.best_metric, "value": result.best, "epoch": result.best_epoch},
                        "last_epoch": result.epochs[-1] if result.epochs else None},
            "data": {"train": str(self.train_file), "val": str(self.val_file),
                     "images_root": {"train": str(self.train_set.images_root), "val": str(self.val_set.images_root)},
                     "unlabeled_images_dir": str(self.unlabeled_dir) if self.unlabeled_dir else None,
                     "training_images": images, "pseudo_labelled_images": result.pseudo_labelled_images},
            "finished_at": finished,
        }
        if processes is not None:
            summary["distributed"] = processes
        write_json_atomic(self.output_dir / STUDENT_JSON, summary)
        write_json_atomic(self.output_dir / METRICS_JSON, {
            "best": summary["metrics"]["best"], "epochs": result.epochs,
            "teacher_labelling": {"seconds": labelling_seconds, "teacher_calls": result.teacher_calls},
            "total_seconds": total_seconds, "device": str(self.device), "torch": torch.__version__,
        })
        return summary


def _processes_summary(distributed: DistributedContext, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """student.json's `distributed` section: what each process did, and whether they ended on the same weights."""
    return {"world_size": distributed.world_size, "backend": distributed.backend,
            "same_weights_on_every_rank": len({rank["student_sha256"] for rank in ranks}) == 1,
            "ranks": [{"rank": index, **rank} for index, rank in enumerate(ranks)]}


def release_accelerator(teachers: GroundedSAM) -> None:
    """Move the teachers off the GPU once they labelled everything (a label lost later is recomputed on the CPU)."""
    if not torch.cuda.is_available() or all(t.device.type != "cuda" for t in teachers.teachers.values()):
        return
    for teacher in teachers.teachers.values():
        teacher.model.to("cpu")
    torch.cuda.empty_cache()
    log.info("teachers moved to the CPU after labelling; %.1f GiB of GPU memory in use",
             torch.cuda.memory_allocated() / 2**30)

