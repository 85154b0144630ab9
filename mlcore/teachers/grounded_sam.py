"""Grounded SAM: Grounding DINO finds and names objects from the class names, SAM turns its boxes into masks.

Mode-aware: only the teachers the dataset's mode recommends are loaded (detection_only: DINO; segmentation_only:
SAM, prompted with boxes the caller gives; detection_and_segmentation: both). Every output is in the original
image's pixel frame, so the student's labels never depend on a teacher's input size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.logs import get_logger
from mlcore.preprocess import SingleModelPreprocessor, load_rgb
from mlcore.preprocess.inputs import ImageInput, is_batch
from mlcore.teachers.adapters import load_adapter
from mlcore.teachers.autocast import LabellingPrecision, autocast, labelling_dtype
from mlcore.teachers.grounding_dino import max_text_len, run_queries, select_detections
from mlcore.teachers.lora import merge_lora_weights
from mlcore.teachers.prompts import PromptChunk, build_prompt_chunks
from mlcore.teachers.sam import image_embeddings, masks_in_original_frame
from mlcore.teachers.types import Teacher, TeacherPrediction

log = get_logger(__name__)

# Sub-folders of a teachers dir, one adapter folder per family (what the teacher training writes).
TEACHER_FOLDERS = {"grounding_dino": "grounding_dino_lora", "sam": "sam_lora"}  # train-teacher writes these
DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_NMS_IOU = 0.7
DEFAULT_MAX_DETECTIONS = 100  # per image, COCO's usual; bounds SAM's work on an image the detector floods

TeacherSource = str | os.PathLike[str] | Teacher


class GroundedSAM:
    """Prompt-free labelling with the fine-tuned teachers: images in, typed per-image predictions out."""

    def __init__(self, class_names: Sequence[str], *, grounding_dino: Teacher | None = None, sam: Teacher | None = None,
                 class_prompts: Mapping[str, Sequence[str]] | None = None,
                 box_threshold: float = DEFAULT_BOX_THRESHOLD, text_threshold: float = DEFAULT_TEXT_THRESHOLD,
                 nms_iou: float | None = DEFAULT_NMS_IOU, max_detections: int | None = DEFAULT_MAX_DETECTIONS,
                 preprocessors: Mapping[str, SingleModelPreprocessor] | None = None,
                 precision: LabellingPrecision = "fp32") -> None:
        """precision: the dtype the heavy forwards autocast to (`mlcore.teachers.autocast`; auto: bf16 where native)."""
        if grounding_dino is None and sam is None:
            raise ModelError("GroundedSAM needs at least one teacher", fix="load Grounding DINO, SAM or both")
        self.class_names = list(class_names)
        self.grounding_dino, self.sam = grounding_dino, sam
        self.class_prompts = {name: list(phrases) for name, phrases in (class_prompts or {}).items()}
        self.box_threshold, self.text_threshold, self.nms_iou = box_threshold, text_threshold, nms_iou
        self.max_detections = max_detections
        self.preprocessors = {family: (preprocessors or {}).get(family) or teacher.preprocessor()
                              for family, teacher in self.teachers.items()}
        if sam is not None:
            _check_sam_input_size(sam, self.preprocessors["sam"])
        for teacher in self.teachers.values():
            teacher.model.eval()
        self.precision = precision
        self.dtypes = {family: labelling_dtype(precision, teacher.device, teacher.parameter_count)
                       for family, teacher in self.teachers.items()}
        self._chunks: dict[tuple[str, ...], list[PromptChunk]] = {}

    @classmethod
    def from_pretrained(cls, teachers: str | os.PathLike[str] | Mapping[str, TeacherSource],
                        mode_config: ModeConfig | str | os.PathLike[str], *,
                        weights_dir: str | os.PathLike[str] | None = None, use_merged: bool = False,
                        device: str | torch.device | None = None,
                        class_prompts: Mapping[str, Sequence[str]] | None = None, box_threshold: float | None = None,
                        text_threshold: float | None = None, nms_iou: float | None = DEFAULT_NMS_IOU,
                        max_detections: int | None = DEFAULT_MAX_DETECTIONS,
                        preprocessors: Mapping[str, SingleModelPreprocessor] | None = None,
                        precision: LabellingPrecision = "fp32") -> GroundedSAM:
        """Load base models plus adapters for the teachers the mode needs, and nothing else.

        teachers: a folder with `grounding_dino/` and `sam/` adapter folders, or {family: adapter folder or Teacher}.
        weights_dir: base weights (default $MLCORE_MODELS_DIR). use_merged: fold the adapters into the base weights
        (faster inference). Prompts and thresholds default to what the Grounding DINO adapter was trained with.
        """
        mode = _read_mode_config(mode_config)
        sources = {family: _source(teachers, family) for family in mode.recommended_teachers}  # all before loading
        loaded: dict[str, Teacher] = {}
        for family, source in sources.items():
            if isinstance(source, Teacher):
                teacher = source
                if use_merged:
                    teacher.model = merge_lora_weights(teacher.model)
                if device is not None:
                    teacher.model.to(device)
            else:
                teacher = load_adapter(source, weights_dir=weights_dir, device=device, merge=use_merged)
            _check_classes(teacher, mode)
            loaded[family] = teacher
        dino = loaded.get("grounding_dino")
        trained = dino.adapter if dino is not None else None  # the DINO adapter's training settings, if any
        if class_prompts is None and trained is not None:
            class_prompts = trained.class_prompts
        return cls(mode.class_names, grounding_dino=dino, sam=loaded.get("sam"), class_prompts=class_prompts,
                   box_threshold=_pick(box_threshold, trained, "box_threshold", DEFAULT_BOX_THRESHOLD),
                   text_threshold=_pick(text_threshold, trained, "text_threshold", DEFAULT_TEXT_THRESHOLD),
                   nms_iou=nms_iou, max_detections=max_detections, preprocessors=preprocessors, precision=precision)

    @property
    def teachers(self) -> dict[str, Teacher]:
        return {family: teacher for family, teacher in (("grounding_dino", self.grounding_dino), ("sam", self.sam))
                if teacher is not None}

    @torch.no_grad()
    def predict(self, images: ImageInput | Sequence[ImageInput],
                class_mapping: Mapping[str, str] | Sequence[str] | None = None, *,
                boxes: Sequence[np.ndarray | torch.Tensor] | None = None,
                class_ids: Sequence[np.ndarray | torch.Tensor] | None = None,
                extract_features: bool = False) -> list[TeacherPrediction]:
        """Label images (one image or a list); always returns a list, one TeacherPrediction per image.

        class_mapping: index -> name (default: the mode config's); its names are Grounding DINO's prompts and the
        returned class ids index it. boxes: per image (n, 4) xyxy in the original frame to prompt SAM with instead
        of Grounding DINO's (required when only SAM is loaded, i.e. segmentation_only); class_ids: their classes
        (default -1). extract_features: add per image, for distillation,
          dino_decoder_hidden_states (Q, d)  last decoder layer, every query of every prompt chunk
          dino_query_boxes (Q, 4)            their boxes, normalized cx, cy, w, h over the DINO input frame
          dino_class_scores (Q, C)           their per-class scores (synonyms merged)
          dino_kept_queries (n,)             which queries became the returned detections
          dino_encoder_vision (S, d)         text-fused multi-scale encoder memory (first prompt chunk), flattened
          dino_spatial_shapes (L, 2)         (h, w) of each level in it, strides 8 to 64
          sam_image_embeddings (C, h, w)     SAM's image encoder output.
        Batched images are padded to a common size, so features of padded positions are batch-dependent.
        """
        rgbs = [load_rgb(image) for image in (images if is_batch(images) else [images])]
        if not rgbs:
            return []
        names = _class_names(class_mapping) if class_mapping is not None else self.class_names
        predictions = self._boxes_given(rgbs, boxes, class_ids) if boxes is not None else None
        if predictions is None:
            if self.grounding_dino is None:
                raise ValueError("only SAM is loaded (segmentation_only): pass boxes= (per image, xyxy in the "
                                 "original frame) to prompt it")
            predictions = self._detect(rgbs, names, extract_features)
        if self.sam is not None:
            self._segment(rgbs, predictions, extract_features)
        return predictions

    def prompt_chunks(self, class_names: Sequence[str]) -> list[PromptChunk]:
        """The Grounding DINO prompts for these classes (cached): as few as fit max_text_len tokens each."""
        key = tuple(class_names)
        if key not in self._chunks:
            assert self.grounding_dino is not None
            prompts = {name: phrases for name, phrases in self.class_prompts.items() if name in key}
            self._chunks[key] = build_prompt_chunks(self.grounding_dino.tokenizer, class_names, prompts,
                                                    max_text_len(self.grounding_dino.model))
        return self._chunks[key]

    def _detect(self, rgbs: list[np.ndarray], names: list[str], extract_features: bool) -> list[TeacherPrediction]:
        assert self.grounding_dino is not None
        batch = self.preprocessors["grounding_dino"](rgbs)
        device = self.grounding_dino.device
        pixel_values = batch.pixel_values.to(device=device, dtype=self.grounding_dino.dtype)
        queries = run_queries(self.grounding_dino.model, pixel_values, batch.pixel_mask.to(device),
                              self.prompt_chunks(names), len(names),
                              autocast=lambda: autocast(device, self.dtypes["grounding_dino"]))
        predictions = []
        for index, (rgb, meta) in enumerate(zip(rgbs, batch.meta)):
            found = select_detections(queries.boxes[index].cpu(), queries.class_scores[index].cpu(), meta,
                                      box_threshold=self.box_threshold, text_threshold=self.text_threshold,
                                      nms_iou=self.nms_iou, max_detections=self.max_detections)
            prediction = TeacherPrediction(boxes=found.boxes, scores=found.scores, class_ids=found.class_ids,
                                           image_size=rgb.shape[:2])
            if extract_features:
                prediction.features.update(
                    dino_decoder_hidden_states=queries.hidden_states[index].cpu(),
                    dino_query_boxes=queries.boxes[index].cpu(), dino_class_scores=queries.class_scores[index].cpu(),
                    dino_kept_queries=found.query_index, dino_encoder_vision=queries.encoder_vision[index].cpu(),
                    dino_spatial_shapes=queries.spatial_shapes)
            predictions.append(prediction)
        return predictions

    def _segment(self, rgbs: list[np.ndarray], predictions: list[TeacherPrediction], extract_features: bool) -> None:
        assert self.sam is not None
        batch = self.preprocessors["sam"](rgbs)
        with autocast(self.sam.device, self.dtypes["sam"]):
            embeddings = image_embeddings(self.sam.model, batch.pixel_values.to(device=self.sam.device,
                                                                                dtype=self.sam.dtype))
        embeddings = embeddings.to(self.sam.dtype)  # the mask decoder runs in the model's own dtype
        for index, (prediction, meta) in enumerate(zip(predictions, batch.meta)):
            prediction.masks, prediction.mask_scores = masks_in_original_frame(
                self.sam.model, embeddings[index:index + 1], prediction.boxes, meta)
            if extract_features:
                prediction.features["sam_image_embeddings"] = embeddings[index].cpu()

    @staticmethod
    def _boxes_given(rgbs: list[np.ndarray], boxes: Sequence, class_ids: Sequence | None) -> list[TeacherPrediction]:
        if len(boxes) != len(rgbs) or (class_ids is not None and len(class_ids) != len(rgbs)):
            raise ValueError(f"boxes= (and class_ids=) need one entry per image: {len(rgbs)} images, "
                             f"{len(boxes)} box sets")
        predictions = []
        for index, (rgb, given) in enumerate(zip(rgbs, boxes)):
            xyxy = torch.as_tensor(np.asarray(given, dtype=np.float32)).reshape(-1, 4)
            ids = (torch.as_tensor(np.asarray(class_ids[index]), dtype=torch.long).reshape(-1) if class_ids is not None
                   else torch.full((len(xyxy),), -1, dtype=torch.long))
            if len(ids) != len(xyxy):
                raise ValueError(f"image {index}: {len(xyxy)} boxes but {len(ids)} class ids")
            predictions.append(TeacherPrediction(boxes=xyxy, scores=torch.ones(len(xyxy)), class_ids=ids,
                                                 image_size=rgb.shape[:2]))
        return predictions


def _read_mode_config(mode_config: ModeConfig | str | os.PathLike[str]) -> ModeConfig:
    if isinstance(mode_config, ModeConfig):
        return mode_config
    path = Path(mode_config)
    if not (path / MODE_CONFIG_NAME if path.is_dir() else path).is_file():
        raise ConfigError("mode config not found", where=str(path),
                          fix="run `mlcore validate` on the dataset; it writes .mode_config.json")
    return ModeConfig.read(path)


def _source(teachers: str | os.PathLike[str] | Mapping[str, TeacherSource], family: str) -> TeacherSource:
    if isinstance(teachers, Mapping):
        if teachers.get(family) is None:
            raise ModelError(f"the mode needs the {family} teacher, but none was given",
                             fix=f"pass {{'{family}': <adapter folder>}} or train that teacher first")
        return teachers[family]
    folder = Path(teachers) / TEACHER_FOLDERS[family]
    if not folder.is_dir():
        raise ModelError(f"the mode needs the {family} teacher, but {folder} does not exist", where=str(teachers),
                         fix=f"train the {family} teacher first; its adapter goes to {folder}")
    return folder


def _check_classes(teacher: Teacher, mode: ModeConfig) -> None:
    """A Grounding DINO adapter names classes; one trained on other classes is the wrong adapter."""
    if teacher.adapter is None or teacher.adapter.class_mapping == mode.class_mapping:
        return
    message = (f"the {teacher.family} adapter was trained on classes {teacher.adapter.class_names}, the dataset has "
               f"{mode.class_names}")
    if teacher.family == "grounding_dino":
        raise ModelError(message, fix="use the adapter trained on this dataset, or retrain the teacher")
    log.warning("%s (SAM is class-agnostic: continuing)", message)


def _check_sam_input_size(sam: Teacher, preprocessor: SingleModelPreprocessor) -> None:
    size = int(sam.preprocessing()["longest_edge"])
    config = preprocessor.config
    if config.longest_edge != size or tuple(config.pad_to or ()) != (size, size):
        raise ConfigError(f"SAM ({sam.preset.name}) needs {size}x{size} inputs, the preprocessor gives "
                          f"longest_edge {config.longest_edge}, pad_to {config.pad_to}", where="preprocessing.sam",
                          fix=f"set longest_edge: {size} and pad_to: [{size}, {size}]")


def _class_names(class_mapping: Mapping[str, str] | Sequence[str]) -> list[str]:
    if isinstance(class_mapping, Mapping):
        return [class_mapping[key] for key in sorted(class_mapping, key=int)]
    return list(class_mapping)


def _pick(value: float | None, trained, key: str, default: float) -> float:
    if value is not None:
        return value
    return float(trained.inference.get(key, default)) if trained is not None else default
