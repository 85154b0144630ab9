"""Teacher fine-tuning: LoRA on Grounding DINO (boxes from class names) and SAM (masks from boxes), mode-aware.

    trainer = TeacherTrainer(run_dir, mode_config, train="train.json", val="val.json",
                             grounding_dino=dino_config, sam=sam_config, device="cuda:0")
    result = trainer.run()          # trains the teachers the mode needs, writes adapters and metrics.json

Writes into `run_dir`:
    grounding_dino_lora/, sam_lora/         adapters of the BEST epoch (`save_adapter`), only for the trained teachers
    checkpoints/<teacher>/                  `CheckpointManager` files; `resume=True` continues from the newest
    cache/sam_embeddings/<key>.pt           SAM image embeddings (fp16), computed once per image, ever (unless
                                            lora.image_encoder: then every step)
    cache/grounding_dino_features/<key>.pt  Grounding DINO's frozen-stage outputs per image and prompt (dino_cache.py)
    tensorboard/<teacher>/                  train/loss, train/lr, train/grad_norm per step; val/* per epoch
    metrics.json                            per teacher: per-epoch loss and val metrics, best, LoRA counts, timings,
                                            per-class scores before/after and the forgetting check

Each teacher runs the same loop (`_fit`): seed, LoRA + the trainable-ratio check, TrainingManager, CheckpointManager,
then per epoch the batches and one validation. Only its loss and its evaluation differ.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.objects import sample_objects
from mlcore.errors import ConfigError, DatasetError
from mlcore.finetune.dino_cache import DinoFeatureCache
from mlcore.finetune.dino_frozen import dataset_canvas, keep_frozen_stages_in_eval, trainable_outside_decoder
from mlcore.finetune.evaluation import dino_detections, evaluate_grounding_dino, evaluate_sam
from mlcore.finetune.forgetting import (class_counts, control_prompt_names, control_prompt_report, per_class_scores,
                                        untrained_class_report)
from mlcore.finetune.inputs import check_sam_image_size, dino_preprocessor
from mlcore.finetune.losses import configure_dino_loss, dino_labels, jitter_boxes, mask_targets, sam_mask_loss
from mlcore.finetune.records import TeacherRun, TeacherTrainingResult
from mlcore.finetune.sam_cache import LiveSamEmbeddings, SamEmbeddingCache
from mlcore.io import write_json_atomic
from mlcore.logs import get_logger
from mlcore.preprocess import SingleModelPreprocessor, load_rgb, stack_pixel_masks
from mlcore.teachers import (apply_lora_to_grounding_dino, apply_lora_to_sam, build_prompt_chunks, load_grounding_dino,
                             load_sam, save_adapter, verify_lora_freezing)
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS
from mlcore.teachers.grounding_dino import max_text_len
from mlcore.teachers.lora import LoraReport
from mlcore.teachers.sam import decode_boxes
from mlcore.teachers.types import Teacher
from mlcore.training.checkpoint import CheckpointManager
from mlcore.training.data_order import epoch_loader
from mlcore.training.loop import run_epochs
from mlcore.training.manager import TrainingManager
from mlcore.training.reproducibility import seed_everything
from mlcore.training.run_setup import open_split

log = get_logger(__name__)

BEST_METRIC = {"grounding_dino": "map50_95", "sam": "mean_iou"}  # picks each teacher's best epoch (higher is better)

PER_CLASS_METRIC = {"grounding_dino": "ap50_95", "sam": "mean_iou"}

StepCallback = Callable[[str, int], None]  # (teacher family, optimizer steps so far), after every micro-batch
# The val metrics, and a score per class index (None: the class has nothing to score in val).
Evaluation = tuple[dict[str, float], dict[int, float | None]]


class TeacherTrainer:
    """Trains the teachers `mode_config.recommended_teachers` names, one after the other, into `output_dir`.

    dynamics: schedule, warmup and seed (lr, weight decay, accumulation, clipping and precision come from each
    teacher config's `training` section). checkpointing: keep/interval/early-stopping settings; its save_dir,
    best_metric and resume are set per teacher. on_step: called after every micro-batch (tests stop runs with it).
    train_images / val_images: the splits' image folders (`--images`); default: where each file says, else the mode
    config's images_root.
    """

    def __init__(self, output_dir: str | Path, mode_config: ModeConfig, *, train: str | Path, val: str | Path,
                 train_images: str | Path | None = None, val_images: str | Path | None = None,
                 grounding_dino: TeacherGroundingDinoLoraConfig | None = None,
                 sam: TeacherSamLoraConfig | None = None, device: str | torch.device = "cpu", resume: bool = False,
                 dynamics: TrainingDynamicsConfig | None = None, checkpointing: CheckpointConfig | None = None,
                 progress: bool = True, on_step: StepCallback | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.mode = mode_config
        self.class_of_category = mode_config.class_of_category
        self.train_file, self.val_file = Path(train), Path(val)
        self.train = open_split(train, train_images, mode_config.images_root)
        self.val = open_split(val, val_images, mode_config.images_root)
        self.configs = {"grounding_dino": grounding_dino or TeacherGroundingDinoLoraConfig(),
                        "sam": sam or TeacherSamLoraConfig()}
        self.device = torch.device(device)
        self.resume = resume
        self.dynamics = dynamics or TrainingDynamicsConfig()
        self.checkpointing = checkpointing or CheckpointConfig()
        self.progress = progress
        self.on_step = on_step

    def run(self) -> TeacherTrainingResult:
        result = TeacherTrainingResult(self.output_dir, self.mode.annotation_mode, str(self.device))
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for family in self.mode.recommended_teachers:
            train = self.train_grounding_dino if family == "grounding_dino" else self.train_sam
            result.runs[family] = train()
            self._write_metrics(result, started)  # after each teacher: a later failure keeps the finished one's
        return result

    # -- the two teachers ----------------------------------------------------------------------------------------

    def train_grounding_dino(self) -> TeacherRun:
        config: TeacherGroundingDinoLoraConfig = self.configs["grounding_dino"]
        seed_everything(self.dynamics.seed, self.dynamics.deterministic)
        teacher = load_grounding_dino(config.model.preset, config.model.weights_dir, device=self.device)
        teacher.model = apply_lora_to_grounding_dino(teacher.model, config.lora)
        loss_settings = configure_dino_loss(teacher.model, config.training.auxiliary_loss)
        report = self._check_lora(teacher, config.lora.max_trainable_fraction)
        class_prompts = config.class_prompts or None
        chunks = build_prompt_chunks(teacher.tokenizer, self.mode.class_names, class_prompts,
                                     max_text_len(teacher.model))
        preprocessor = dino_preprocessor(teacher, config)
        cache, timings = self._dino_feature_cache(teacher, config, preprocessor, chunks)

        def batch_loss(indices: list[int]) -> torch.Tensor:
            samples = [self.train[i] for i in indices]
            if cache is not None:  # no pixels read: the frozen stages' outputs come from disk
                paths = [sample.image_path for sample in samples]
                metas = cache.metas([(sample.height, sample.width) for sample in samples])
                pixel_values = cache.blank(len(samples))
                pixel_mask = stack_pixel_masks(metas).to(self.device)
                replay = lambda: cache.replay(teacher.model, paths)  # noqa: E731
            else:
                batch = preprocessor([load_rgb(sample.image_path) for sample in samples])
                metas = batch.meta
                pixel_values = batch.pixel_values.to(device=self.device, dtype=teacher.dtype)
                pixel_mask = batch.pixel_mask.to(self.device)
                replay = contextlib.nullcontext
            objects = [sample_objects(sample, self.class_of_category) for sample in samples]
            total = pixel_values.new_zeros(())
            # Each prompt chunk is its own forward, labelled with only its classes' boxes (one chunk: all of them).
            for chunk in chunks:
                labels = [{key: value.to(self.device) for key, value in dino_labels(o, meta, chunk).items()}
                          for o, meta in zip(objects, metas)]
                with replay():
                    outputs = teacher.model(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels,
                                            **chunk.encode(len(samples), self.device))
                total = total + outputs.loss
            return total / len(chunks)

        def evaluate() -> Evaluation:
            scores = evaluate_grounding_dino(teacher, self.val, self.val_file, chunks, self.mode.category_ids,
                                             batch_size=config.training.batch_size, preprocessor=preprocessor,
                                             feature_cache=cache)
            return scores.metrics, scores.per_class

        inference = config.inference.model_dump()
        run = self._fit("grounding_dino", teacher, report, list(range(len(self.train))), config.training,
                        batch_loss, evaluate, len(self.val), {"class_prompts": config.class_prompts,
                                                              "inference": inference}, timings)
        run.loss = loss_settings
        # The model now holds the saved (best) adapter: score it per class, then the prompts it never trained.
        started = time.perf_counter()
        self._per_class_and_untrained(run, evaluate, masks=False)
        names = control_prompt_names(config.forgetting, self.mode.class_names, config.class_prompts)
        control_chunks = (build_prompt_chunks(teacher.tokenizer, names, None, max_text_len(teacher.model))
                          if names else [])

        def detect(prompt_chunks, indices):
            return dino_detections(teacher, self.val, indices, prompt_chunks, len(names), preprocessor=preprocessor,
                                   feature_cache=cache, batch_size=config.training.batch_size)

        def detect_base(prompt_chunks, indices):
            with teacher.model.disable_adapter():  # the base model, without reloading it
                return detect(prompt_chunks, indices)

        run.forgetting["control_prompts"] = control_prompt_report(detect_base, detect, self.val, control_chunks,
                                                                  names, config.forgetting)
        run.timings["forgetting_seconds"] = time.perf_counter() - started
        return run

    def train_sam(self) -> TeacherRun:
        config: TeacherSamLoraConfig = self.configs["sam"]
        if not config.freeze.image_encoder:
            raise ConfigError("the SAM teacher trains its mask decoder from cached image embeddings, so the image "
                              "encoder must stay frozen", where="teacher_sam_lora.freeze.image_encoder",
                              fix="set freeze.image_encoder: true")
        if not config.cache_image_embeddings and not config.lora.image_encoder:
            log.warning("cache_image_embeddings: false is ignored: the frozen encoder's embeddings are always cached")
        seed_everything(self.dynamics.seed, self.dynamics.deterministic)
        teacher = load_sam(config.model.preset, config.model.weights_dir, device=self.device)
        check_sam_image_size(teacher, config)
        teacher.model = apply_lora_to_sam(teacher.model, config.lora, config.freeze)
        report = self._check_lora(teacher, config.lora.max_trainable_fraction)

        train_items = self._images_with_masks(self.train)
        val_items = self._images_with_masks(self.val)
        if not train_items:
            raise DatasetError("no training image has a (non-crowd) mask: SAM has nothing to learn from",
                               where=str(self.train_file), fix="add segmentations, or train detection_only")
        if config.lora.image_encoder:
            log.info("the SAM image encoder has LoRA: its embeddings are computed every step, not cached")
            cache: SamEmbeddingCache | LiveSamEmbeddings = LiveSamEmbeddings(teacher)
        else:
            cache = SamEmbeddingCache(self.output_dir / "cache" / "sam_embeddings", teacher, progress=self.progress)
        cache_started = time.perf_counter()
        cache.fill([self.train[i].image_path for i in train_items] + [self.val[i].image_path for i in val_items])
        cache_seconds = time.perf_counter() - cache_started

        def batch_loss(indices: list[int]) -> torch.Tensor:
            losses = []
            for index in indices:
                sample = self.train[index]
                objects = sample_objects(sample, self.class_of_category)
                meta = cache.preprocessor.plan(sample.height, sample.width)
                boxes = jitter_boxes(objects.boxes[torch.from_numpy(objects.has_mask)], config.box_jitter_fraction,
                                     sample.width, sample.height)
                logits, iou_predictions = decode_boxes(teacher.model, cache.get(sample.image_path),
                                                       meta.boxes_to_model(boxes))
                targets = mask_targets(objects.masks(sample), meta, logits.shape[-1]).to(logits.device)
                losses.append(sam_mask_loss(logits, iou_predictions, targets, config.loss))
            return torch.stack(losses).mean()

        def evaluate() -> Evaluation:
            scores = evaluate_sam(teacher, self.val, val_items, cache, self.class_of_category)
            return scores.metrics, scores.per_class

        timings = {"embedding_cache_seconds": cache_seconds, "images_encoded": float(cache.encoder_calls)}
        run = self._fit("sam", teacher, report, train_items, config.training, batch_loss, evaluate, len(val_items),
                        {}, timings)
        self._per_class_and_untrained(run, evaluate, masks=True)
        return run

    # -- the shared loop -----------------------------------------------------------------------------------------

    def _fit(self, family: str, teacher: Teacher, report: LoraReport, items: list[int], training: Any,
             batch_loss: Callable[[list[int]], torch.Tensor], evaluate: Callable[[], Evaluation],
             val_images: int, adapter_extras: dict[str, Any], timings: dict[str, float]) -> TeacherRun:
        started = time.perf_counter()
        model, epochs, batch_size = teacher.model, training.epochs, training.batch_size
        dynamics = self.dynamics.model_copy(update={
            "lr": training.lr, "weight_decay": training.weight_decay, "grad_accum_steps": training.grad_accum_steps,
            "clip_grad_norm": training.max_grad_norm, "mixed_precision": training.mixed_precision})
        loader = epoch_loader(items, batch_size, dynamics.seed, collate_fn=list)
        manager = TrainingManager(model, model.parameters(), dynamics, device=self.device,
                                  batches_per_epoch=len(loader), epochs=epochs)
        ckpt = CheckpointManager(self.checkpointing.model_copy(update={
            "save_dir": self.output_dir / "checkpoints" / family, "best_metric": BEST_METRIC[family],
            "best_mode": "max", "resume": self.resume}), model)
        baseline, baseline_per_class = self._baseline(family, evaluate)  # before resume() loads trained weights
        state = ckpt.resume(manager)
        loop_timings = run_epochs(
            name=family, manager=manager, ckpt=ckpt, state=state, loader=loader, epochs=epochs,
            batch_loss=lambda batch, _epoch: batch_loss(batch), evaluate=lambda: evaluate()[0],
            tensorboard_dir=self.output_dir / "tensorboard" / family, progress=self.progress,
            on_step=None if self.on_step is None else lambda step: self.on_step(family, step))

        adapter_dir = self._save_best_adapter(teacher, ckpt, report, adapter_extras)
        tracker = ckpt.tracker
        return TeacherRun(
            family=family, preset=teacher.preset.name, adapter_dir=adapter_dir, best_metric=tracker.metric,
            best=tracker.best, best_epoch=tracker.best_epoch, epochs=list(tracker.history), lora=report.to_dict(),
            timings={**timings, "train_seconds": loop_timings.train_seconds, "eval_seconds": loop_timings.eval_seconds,
                     "total_seconds": time.perf_counter() - started},
            resumed_from=str(state.checkpoint) if state.checkpoint else None, train_images=len(items),
            val_images=val_images, baseline=baseline, baseline_per_class=baseline_per_class)

    # -- helpers -------------------------------------------------------------------------------------------------

    def _baseline(self, family: str, evaluate: Callable[[], Evaluation]
                  ) -> tuple[dict[str, float], dict[int, float | None]]:
        """The base model's val scores and per-class scores, measured once per run folder (a resumed run reads
        them back). PEFT starts LoRA's B matrices at zero, so the freshly adapted model computes what the base does.
        """
        path = self.output_dir / "checkpoints" / family / "before_fine_tuning.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            return stored["scores"], {int(k): v for k, v in stored["per_class"].items()}
        scores, per_class = evaluate()
        write_json_atomic(path, {"scores": scores, "per_class": {str(k): v for k, v in per_class.items()}})
        return scores, per_class

    def _per_class_and_untrained(self, run: TeacherRun, evaluate: Callable[[], Evaluation], *, masks: bool) -> None:
        """Per-class scores of the saved adapter beside the base's, and the untrained classes' part of them."""
        _, after = evaluate()
        metric = PER_CLASS_METRIC[run.family]
        table = per_class_scores(run.baseline_per_class, after, self.mode.class_names)
        run.per_class = {"metric": metric, "classes": table}
        train = class_counts(self.train, self.class_of_category, masks=masks)
        val = class_counts(self.val, self.class_of_category, masks=masks)
        run.forgetting["untrained_classes"] = untrained_class_report(table, train, val, self.mode.class_names, metric)

    def _dino_feature_cache(self, teacher: Teacher, config: TeacherGroundingDinoLoraConfig,
                            preprocessor: SingleModelPreprocessor, chunks: list
                            ) -> tuple[DinoFeatureCache | None, dict[str, float]]:
        """The frozen-stage cache, filled for every train and val image, or None when off or not valid."""
        outside = trainable_outside_decoder(teacher.model)
        if outside:
            if config.cache_frozen_features:
                log.info("cache_frozen_features is off for this run: %d trainable parameter(s) lie in the stages it "
                         "would replay (e.g. %s)", len(outside), outside[0])
            return None, {}
        keep_frozen_stages_in_eval(teacher.model)  # with or without the cache, so both compute the same loss
        if not config.cache_frozen_features:
            return None, {}
        started = time.perf_counter()
        samples = [self.train[i] for i in range(len(self.train))] + [self.val[i] for i in range(len(self.val))]
        canvas = dataset_canvas(preprocessor, [(sample.height, sample.width) for sample in samples])
        cache = DinoFeatureCache(self.output_dir / "cache" / "grounding_dino_features", teacher, preprocessor, canvas,
                                 dtype=getattr(torch, config.frozen_features_dtype), progress=self.progress,
                                 max_gb=config.cache.max_gb)
        cache.fill([sample.image_path for sample in samples], chunks)
        return cache, {"frozen_feature_cache_seconds": time.perf_counter() - started,
                       "frozen_stage_runs": float(cache.stage_calls), "cache_over_budget": float(cache.over_budget)}

    def _check_lora(self, teacher: Teacher, max_trainable_fraction: float) -> LoraReport:
        """Refuse to train more than the configured fraction (ModelError), before any compute is spent."""
        report = verify_lora_freezing(teacher.model, max_trainable_fraction)
        log.info("%s LoRA: %s of %s parameters train (%.3f %%)", teacher.family, f"{report.trainable:,}",
                 f"{report.total:,}", 100 * report.ratio)
        return report

    def _images_with_masks(self, dataset: CocoDataset) -> list[int]:
        return [index for index in range(len(dataset))
                if sample_objects(dataset[index], self.class_of_category).has_mask.any()]

    def _save_best_adapter(self, teacher: Teacher, ckpt: CheckpointManager, report: LoraReport,
                           extras: dict[str, Any]) -> Path:
        """The adapter of the best epoch (the last one when no epoch was ever best), written whole or not at all."""
        if ckpt.best_path.is_file():
            payload = torch.load(ckpt.best_path, map_location="cpu", weights_only=True)
            teacher.model.load_state_dict(payload["model"], strict=False)
        final = self.output_dir / TEACHER_FOLDERS[teacher.family]
        staging = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        save_adapter(teacher, staging, class_mapping=self.mode.class_mapping, report=report, **extras)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return final

    def _write_metrics(self, result: TeacherTrainingResult, started: str) -> None:
        write_json_atomic(result.metrics_path, {
            "mode": result.mode, "device": result.device, "torch": torch.__version__, "started_at": started,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "train": str(self.train_file), "val": str(self.val_file),
            "images_root": {"train": str(self.train.images_root), "val": str(self.val.images_root)},
            "teachers": {family: run.to_dict() for family, run in result.runs.items()},
        })

