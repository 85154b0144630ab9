"""Grounding DINO: build or load it (with its tokenizer), and turn its outputs into boxes in the original image.

Loading: `tiny` and `random_init=True` build the architecture with seeded random weights (tokenizer: the offline
character vocabulary of `presets.tiny_tokenizer`); full-size presets load `<models dir>/grounding_dino_swint/` (or
`grounding_dino_swinb/`: weights, tokenizer, preprocessor_config.json) with `local_files_only=True`, and record which
weights they are (`Teacher.base`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch
from torch import nn
from torchvision.ops import batched_nms
from transformers import AutoTokenizer, GroundingDinoForObjectDetection, GroundingDinoModel

from mlcore.errors import ModelError
from mlcore.preprocess import PreprocessMeta
from mlcore.teachers.presets import DINO_SPECIAL_TOKEN_IDS, TeacherPreset, get_preset, tiny_tokenizer
from mlcore.teachers.prompts import PromptChunk, class_scores
from mlcore.teachers.types import Teacher
from mlcore.teachers.weights import (checkpoint_preprocessing, load_pretrained, random_base, read_base_weights,
                                     resolve_weights_folder, seeded)


def patch_grounding_dino_for_peft() -> None:
    """Give GroundingDinoModel a `get_input_embeddings` (its text encoder's), which PEFT calls.

    transformers 5.x cannot find it on its own (`NotImplementedError: get_input_embeddings not auto-handled`), so
    `get_peft_model` and `PeftModel.from_pretrained` fail without this. The only monkeypatch of a library class in
    mlcore; idempotent, and a no-op once GroundingDinoModel defines the method itself.
    """
    # Only when the class has no override of its own (a later transformers may add the right one).
    if "get_input_embeddings" not in vars(GroundingDinoModel):
        GroundingDinoModel.get_input_embeddings = _text_input_embeddings  # type: ignore[method-assign]


def _text_input_embeddings(self: GroundingDinoModel) -> nn.Module:
    return self.text_backbone.get_input_embeddings()


def load_grounding_dino(preset: str | TeacherPreset = "grounding_dino_swint",
                        weights_dir: str | os.PathLike[str] | None = None, *, random_init: bool = False,
                        device: str | torch.device | None = None) -> Teacher:
    """The base model and tokenizer, in eval mode.

    weights_dir: the models dir (or the model folder itself); default $MLCORE_MODELS_DIR, else models/ at the
    project root. Ignored for `tiny` and with random_init=True (seeded random weights: the same model every time;
    for tests and benchmarks).
    """
    patch_grounding_dino_for_peft()
    preset = get_preset("grounding_dino", preset)
    if random_init or not preset.needs_weights:
        with seeded():
            model = GroundingDinoForObjectDetection(preset.build_config())
        teacher = Teacher(family="grounding_dino", preset=preset, model=model, tokenizer=tiny_tokenizer(),
                          base=random_base(preset))
    else:
        folder = resolve_weights_folder(preset, weights_dir)
        model = load_pretrained(folder, preset, lambda path: GroundingDinoForObjectDetection.from_pretrained(
            path, local_files_only=True))
        tokenizer = load_pretrained(folder, preset, lambda path: AutoTokenizer.from_pretrained(
            path, local_files_only=True))
        check_tokenizer(tokenizer, folder)
        teacher = Teacher(family="grounding_dino", preset=preset, model=model, tokenizer=tokenizer,
                          weights=str(folder), base=read_base_weights(folder, preset),
                          checkpoint_preprocessing=checkpoint_preprocessing(folder, preset))
    model.eval()
    if device is not None:
        model.to(device)
    return teacher


def check_tokenizer(tokenizer, folder: Path) -> None:
    """Grounding DINO splits phrases at fixed token ids; a vocabulary that disagrees would silently mis-split."""
    ids = tokenizer.convert_tokens_to_ids(list(DINO_SPECIAL_TOKEN_IDS))
    if ids != list(DINO_SPECIAL_TOKEN_IDS.values()):
        raise ModelError(f"the tokenizer maps {list(DINO_SPECIAL_TOKEN_IDS)} to {ids}, Grounding DINO needs "
                         f"{list(DINO_SPECIAL_TOKEN_IDS.values())}", where=str(folder),
                         fix="use the BERT tokenizer files that come with the Grounding DINO weights")


def max_text_len(model: nn.Module) -> int:
    return int(_detector(model).config.max_text_len)


@dataclass
class DinoQueries:
    """Every query of every prompt chunk for a batch: boxes (B, Q, 4) normalized cxcywh over the model input,
    per-class scores (B, Q, C), decoder hidden states (B, Q, d); encoder features of the first chunk."""

    boxes: torch.Tensor
    class_scores: torch.Tensor
    hidden_states: torch.Tensor
    encoder_vision: torch.Tensor
    spatial_shapes: torch.Tensor


def run_queries(model: nn.Module, pixel_values: torch.Tensor, pixel_mask: torch.Tensor,
                chunks: Sequence[PromptChunk], num_classes: int, *,
                autocast: Callable[[], ContextManager[object]] = contextlib.nullcontext) -> DinoQueries:
    """One forward per prompt chunk (the image batch shares it, and the image backbone runs once for all chunks);
    queries of all chunks are concatenated, in fp32 whatever `autocast` ran the forwards in."""
    boxes, scores, hidden, encoder_vision, shapes = [], [], [], None, []
    encoder = _detector(model).model.encoder
    hook = encoder.register_forward_hook(
        lambda _module, _args, kwargs, _output: shapes.append(kwargs["spatial_shapes_list"]), with_kwargs=True)
    try:
        with backbone_computed_once(model):
            for chunk in chunks:
                text = chunk.encode(pixel_values.shape[0], pixel_values.device)
                with autocast():
                    outputs = model(pixel_values=pixel_values, pixel_mask=pixel_mask, **text)
                boxes.append(outputs.pred_boxes.float())
                scores.append(class_scores(outputs.logits.float(), chunk, num_classes))
                hidden.append(outputs.last_hidden_state.float())
                if encoder_vision is None:
                    encoder_vision = outputs.encoder_last_hidden_state_vision.float()
    finally:
        hook.remove()
    return DinoQueries(boxes=torch.cat(boxes, 1), class_scores=torch.cat(scores, 1), hidden_states=torch.cat(hidden, 1),
                       encoder_vision=encoder_vision, spatial_shapes=torch.tensor(shapes[0], dtype=torch.long))


@contextlib.contextmanager
def backbone_computed_once(model: nn.Module) -> Iterator[None]:
    """Within the block, the image backbone (Swin + position embeddings) runs once per input: a later call with the
    very same pixel tensors gets the first output. It never sees the text, so every prompt chunk of one image batch
    can share it; a call with other pixels (the feature cache recomputing one image) still runs."""
    backbone = _detector(model).model.backbone
    forward = backbone.forward
    last: list[tuple[tuple[object, ...], object]] = []

    def once(*args: object) -> object:
        if not (last and len(last[0][0]) == len(args) and all(a is b for a, b in zip(last[0][0], args))):
            last[:] = [(args, forward(*args))]
        return last[0][1]

    backbone.forward = once
    try:
        yield
    finally:
        del backbone.forward  # the class's own forward again


@dataclass
class Detections:
    """One image's kept queries: xyxy boxes in the original frame, scores, class ids, and which queries they are."""

    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    query_index: torch.Tensor


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, meta: PreprocessMeta, *, box_threshold: float,
                      text_threshold: float, nms_iou: float | None, max_detections: int | None = None) -> Detections:
    """One image's queries -> detections: best class per query, thresholds, original frame, per-class NMS.

    A query is kept when its best class scores at least box_threshold and text_threshold (a class's score is its
    best phrase's, so text_threshold only matters above box_threshold). Boxes that end up empty after clipping to
    the image (predicted into the padding) are dropped. nms_iou None: no NMS. max_detections: keep the best this
    many (None: all).
    """
    best, labels = scores.float().max(-1)
    keep = best >= max(box_threshold, text_threshold)
    # The frame convention lives in PreprocessMeta (shared with training labels), so both sides always agree.
    xyxy = meta.boxes_from_normalized_cxcywh(boxes.float())
    keep &= (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    index = keep.nonzero().flatten()
    if nms_iou is not None and index.numel():
        index = index[batched_nms(xyxy[index], best[index], labels[index], nms_iou)]
    index = index[best[index].argsort(descending=True, stable=True)][:max_detections]
    return Detections(boxes=xyxy[index], scores=best[index].float(), class_ids=labels[index].long(),
                      query_index=index)


def _detector(model: nn.Module) -> GroundingDinoForObjectDetection:
    """The transformers model inside a PeftModel (or the model itself, merged or plain)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, GroundingDinoForObjectDetection):
        raise TypeError(f"expected a Grounding DINO model, got {type(base).__name__}")
    return base
