"""SAM: build or load it, embed images once, and turn boxes into masks from those embeddings.

The image encoder is most of SAM's cost (10-50 s per 1024 px image on CPU) and stays frozen, so callers compute
`image_embeddings` once per image and run the small prompt encoder + mask decoder per set of boxes.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import SamModel

from mlcore.logs import get_logger
from mlcore.preprocess import PreprocessMeta
from mlcore.teachers.presets import TeacherPreset, get_preset
from mlcore.teachers.types import Teacher
from mlcore.teachers.weights import (checkpoint_preprocessing, load_pretrained, random_base, read_base_weights,
                                     resolve_weights_folder, seeded)

log = get_logger(__name__)

# Boxes per mask-decoder call: bounds memory when an image has hundreds of boxes.
BOX_BATCH = 64


def load_sam(preset: str | TeacherPreset = "sam_vit_b", weights_dir: str | os.PathLike[str] | None = None, *,
             random_init: bool = False, device: str | torch.device | None = None) -> Teacher:
    """The base SAM model in eval mode.

    weights_dir: the models dir (or the model folder itself); default $MLCORE_MODELS_DIR, else models/ at the
    project root. Ignored for `tiny` and with random_init=True (seeded random weights: the same model every time;
    for tests and benchmarks).
    """
    preset = get_preset("sam", preset)
    if random_init or not preset.needs_weights:
        with seeded():
            model = SamModel(preset.build_config())
        teacher = Teacher(family="sam", preset=preset, model=model, base=random_base(preset))
    else:
        folder = resolve_weights_folder(preset, weights_dir)
        model = load_pretrained(folder, preset, lambda path: SamModel.from_pretrained(path, local_files_only=True))
        teacher = Teacher(family="sam", preset=preset, model=model, weights=str(folder),
                          base=read_base_weights(folder, preset),
                          checkpoint_preprocessing=checkpoint_preprocessing(folder, preset))
        size = int(model.config.vision_config.image_size)
        asked = teacher.checkpoint_preprocessing.get("longest_edge")
        if asked is not None and asked != size:
            log.warning("%s asks for %d px inputs, the model's position embeddings take %d: using %d", folder, asked,
                        size, size)
    model.eval()
    if device is not None:
        model.to(device)
    return teacher


@torch.no_grad()
def image_embeddings(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) preprocessed images -> (B, C, S/16, S/16) embeddings of the frozen image encoder."""
    return model.get_image_embeddings(pixel_values)


def decode_boxes(model: nn.Module, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's embedding (1, C, h, w) and its boxes (n, 4) xyxy in the model input frame -> low-res mask logits
    (n, 4h, 4w) over the whole padded input, and SAM's predicted IoU (n,). Differentiable (training uses it)."""
    if boxes.shape[0] == 0:
        size = embeddings.shape[-1] * 4
        return embeddings.new_zeros((0, size, size)), embeddings.new_zeros((0,))
    logits, ious = [], []
    for start in range(0, boxes.shape[0], BOX_BATCH):
        part = boxes[start:start + BOX_BATCH].to(embeddings)
        outputs = model(image_embeddings=embeddings, input_boxes=part[None], multimask_output=False)
        logits.append(outputs.pred_masks[0, :, 0])
        ious.append(outputs.iou_scores[0, :, 0])
    return torch.cat(logits), torch.cat(ious)


def masks_in_original_frame(model: nn.Module, embeddings: torch.Tensor, boxes: torch.Tensor,
                            meta: PreprocessMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (n, 4) xyxy in the ORIGINAL image -> masks (n, H, W) bool in the original image and IoU scores (n,)."""
    logits, ious = decode_boxes(model, embeddings, meta.boxes_to_model(boxes.float()))
    return meta.masks_from_model(logits.float().cpu(), threshold=0.0), ious.float().cpu()
