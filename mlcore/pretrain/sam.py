"""Train a small SAM from scratch, all parameters, on studio shapes with box prompts: the demo's segmenter.

transformers' own `SamModel`, saved as a Hugging Face folder like `facebook/sam-vit-base`. The tiny test preset
(16 px patches, 64x64 low-res masks over 256 px) learns too slowly from scratch (ENGINEERING.md); this one sees 8 px
patches of a 160 px input, so its 80x80 low-res masks put two input pixels per cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import SamModel

from mlcore.config.schemas.teachers import SamLossWeights
from mlcore.data.shapes_world import Domain, Scene
from mlcore.finetune.losses import jitter_boxes, mask_targets, sam_mask_loss
from mlcore.preprocess import SingleModelPreprocessor, for_model
from mlcore.pretrain.scenes import training_scenes
from mlcore.teachers.presets import SAM_PRESETS
from mlcore.teachers.sam import decode_boxes, masks_in_original_frame

PRESET = SAM_PRESETS["shapes"]
PREPROCESSING = PRESET.preprocessing
IMAGE_SIZE = PREPROCESSING["longest_edge"]
BOX_JITTER = 0.1  # box prompts move by up to 10 % of their size: labelled boxes and detections are never exact


def new_shapes_sam(seed: int) -> SamModel:
    """A from-scratch SAM with segment-anything's own positional frequencies.

    transformers scales the random Fourier features by hidden_size / 2 (48 here; the released checkpoints bring
    their own), where segment-anything uses 1: at 48 the encodings of nearby box corners are unrelated, and the
    model learns to segment every object whatever the box says.
    """
    torch.manual_seed(seed)
    model = SamModel(PRESET.build_config())
    frequencies = torch.randn(model.shared_image_embedding.positional_embedding.shape)
    with torch.no_grad():
        for module in (model.shared_image_embedding, model.prompt_encoder.shared_embedding):
            module.positional_embedding.copy_(frequencies)
    return model


def sam_preprocessor() -> SingleModelPreprocessor:
    return for_model("sam", {"sam": PREPROCESSING})


def sam_step_loss(model: SamModel, seed: int, step: int, batch_size: int,
                  preprocessor: SingleModelPreprocessor, domain: Domain = "studio") -> torch.Tensor:
    """BCE + dice + IoU-head loss of one step's scenes, every object prompted by its jittered box."""
    scenes = training_scenes(seed, step, batch_size, domain)
    prepared = preprocessor([scene.image for scene in scenes])
    embeddings = model.vision_encoder(prepared.pixel_values)[0]  # get_image_embeddings() is no_grad: nothing learns
    losses = []
    for index, (scene, meta) in enumerate(zip(scenes, prepared.meta)):
        if not len(scene.names):
            continue
        height, width = scene.image.shape[:2]
        boxes = jitter_boxes(torch.from_numpy(scene.boxes), BOX_JITTER, width, height)
        logits, ious = decode_boxes(model, embeddings[index:index + 1], meta.boxes_to_model(boxes))
        targets = mask_targets(scene.masks.astype(np.uint8), meta, logits.shape[-1])
        losses.append(sam_mask_loss(logits, ious, targets, SamLossWeights()))
    return torch.stack(losses).mean()


@torch.inference_mode()
def evaluate_sam(model: SamModel, scenes: Sequence[Scene], preprocessor: SingleModelPreprocessor | None = None
                 ) -> dict[str, float]:
    """Mean mask IoU with the exact boxes as prompts, in the original frame; and that of filling the box (the
    floor a segmenter must beat)."""
    was_training = model.training
    model.eval()
    preprocessor = preprocessor or sam_preprocessor()
    ious, box_ious = [], []
    for scene in scenes:
        if not len(scene.names):
            continue
        prepared = preprocessor(scene.image)
        embeddings = model.get_image_embeddings(prepared.pixel_values[None])
        masks, _ = masks_in_original_frame(model, embeddings, torch.from_numpy(scene.boxes), prepared.meta)
        for predicted, truth, box in zip(masks.numpy(), scene.masks, scene.boxes.astype(int)):
            ious.append(_iou(predicted, truth))
            filled = np.zeros_like(truth)
            filled[box[1]:box[3], box[0]:box[2]] = True
            box_ious.append(_iou(filled, truth))
    model.train(was_training)
    return {"mask_iou": float(np.mean(ious)) if ious else 0.0,
            "box_fill_iou": float(np.mean(box_ious)) if box_ious else 0.0}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
