"""The teacher LoRA training steps that `bench_teachers.py` (CPU) and `gpu_teachers.py` (CUDA) time.

Inputs are synthetic and seeded (speed and memory do not depend on pixel values or weights): random normalized
images, a few boxes per image, and for SAM a filled-box target mask per box. A step is what a trainer does per
batch: forward, loss, backward, AdamW step, zero_grad.

- SAM: the LoRA-adapted mask decoder on image embeddings, either cached (computed once, the default of the
  teacher config) or recomputed by the frozen image encoder in the step (what a trainer without a cache pays).
  The loss is BCE + dice + MSE(predicted IoU, true IoU), the terms of `teacher_sam_lora.loss`.
- Grounding DINO: forward with `labels` (phrase indices + normalized cxcywh boxes) -> the model's own loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mlcore.teachers import PromptChunk, build_prompt_chunks
from mlcore.teachers.sam import image_embeddings

LEARNING_RATE = 1e-4
DINO_CLASSES = ("person", "forklift", "pallet")  # a ~3-class prompt: "person . forklift . pallet ."
Autocast = Callable[[], contextlib.AbstractContextManager]


def no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def adamw(model: nn.Module) -> torch.optim.AdamW:
    """AdamW over the trainable (LoRA) parameters only, as the teacher trainers configure it."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE,
                             weight_decay=1e-4)


# --- SAM -----------------------------------------------------------------------------------------------------------

@dataclass
class SamBatch:
    pixel_values: torch.Tensor  # (B, 3, S, S)
    boxes: torch.Tensor  # (B, n, 4) xyxy in the S x S input frame
    target_masks: torch.Tensor  # (B, n, S/4, S/4) float 0/1 at the decoder's low-res mask size


def sam_batch(image_size: int, batch: int, boxes_per_image: int, seed: int = 0,
              device: torch.device | str = "cpu") -> SamBatch:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, image_size, image_size, generator=generator)
    corners = torch.rand(batch, boxes_per_image, 2, 2, generator=generator) * image_size
    low, high = corners.min(dim=2).values, corners.max(dim=2).values
    high = torch.maximum(high, low + image_size / 16)  # at least one embedding cell wide
    boxes = torch.cat([low, high], dim=-1).clamp(0, image_size)
    mask_size = image_size // 4
    grid = (torch.arange(mask_size) + 0.5) * 4  # low-res pixel centres in the input frame
    x1, y1, x2, y2 = (boxes[..., i, None, None] for i in range(4))
    targets = ((grid[None, :] >= x1) & (grid[None, :] < x2) & (grid[:, None] >= y1) & (grid[:, None] < y2)).float()
    return SamBatch(pixel_values=pixels.to(device), boxes=boxes.to(device), target_masks=targets.to(device))


def sam_mask_loss(logits: torch.Tensor, predicted_iou: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE + dice + MSE between SAM's predicted IoU and the IoU of its thresholded mask with the target."""
    logits, predicted_iou = logits.float(), predicted_iou.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    probabilities = logits.sigmoid().flatten(-2)
    flat = targets.flatten(-2)
    dice = 1 - (2 * (probabilities * flat).sum(-1) + 1) / (probabilities.sum(-1) + flat.sum(-1) + 1)
    with torch.no_grad():
        hard = (logits > 0).flatten(-2).float()
        true_iou = (hard * flat).sum(-1) / ((hard + flat).clamp(max=1).sum(-1)).clamp(min=1)
    return bce + dice.mean() + F.mse_loss(predicted_iou, true_iou)


def sam_embed(model: nn.Module, pixel_values: torch.Tensor, autocast: Autocast = no_autocast) -> torch.Tensor:
    """The frozen image encoder (no graph kept): what the cache stores per image."""
    with autocast():
        return image_embeddings(model, pixel_values)


def sam_decoder_step(model: nn.Module, optimizer: torch.optim.Optimizer, embeddings: torch.Tensor,
                     batch: SamBatch, autocast: Autocast = no_autocast) -> float:
    """One LoRA step of the mask decoder on (B, C, h, w) embeddings, all images' boxes in one batched call."""
    with autocast():
        outputs = model(image_embeddings=embeddings, input_boxes=batch.boxes, multimask_output=False)
        loss = sam_mask_loss(outputs.pred_masks[:, :, 0], outputs.iou_scores[:, :, 0], batch.target_masks)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def sam_recompute_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: SamBatch,
                       autocast: Autocast = no_autocast) -> float:
    """The same step without a cache: the frozen encoder runs on the batch's images first."""
    return sam_decoder_step(model, optimizer, sam_embed(model, batch.pixel_values, autocast), batch, autocast)


# --- Grounding DINO ------------------------------------------------------------------------------------------------

@dataclass
class DinoBatch:
    inputs: dict[str, torch.Tensor]  # pixel_values, pixel_mask, input_ids, attention_mask, token_type_ids
    labels: list[dict[str, torch.Tensor]]
    prompt: str


def dino_batch(tokenizer, height: int, width: int, batch: int, boxes_per_image: int,
               class_names: Sequence[str] = DINO_CLASSES, seed: int = 0,
               device: torch.device | str = "cpu") -> DinoBatch:
    (chunk,) = build_prompt_chunks(tokenizer, list(class_names))
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, height, width, generator=generator)
    labels = [_dino_labels(chunk, len(class_names), boxes_per_image, generator, device) for _ in range(batch)]
    inputs = {"pixel_values": pixels.to(device),
              "pixel_mask": torch.ones(batch, height, width, dtype=torch.long, device=device),
              **chunk.encode(batch, device)}
    return DinoBatch(inputs=inputs, labels=labels, prompt=chunk.text)


def _dino_labels(chunk: PromptChunk, num_classes: int, boxes: int, generator: torch.Generator,
                 device: torch.device | str) -> dict[str, torch.Tensor]:
    classes = torch.randint(0, num_classes, (boxes,), generator=generator)
    centres = 0.2 + 0.6 * torch.rand(boxes, 2, generator=generator)
    sizes = 0.05 + 0.3 * torch.rand(boxes, 2, generator=generator)
    return {"class_labels": torch.tensor([chunk.label_index(int(c)) for c in classes], device=device),
            "boxes": torch.cat([centres, sizes], dim=-1).to(device)}


def dino_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: DinoBatch,
              autocast: Autocast = no_autocast) -> float:
    """Forward with labels -> the model's loss (its matcher, CE, L1, GIoU, encoder terms), backward, AdamW."""
    with autocast():
        loss = model(**batch.inputs, labels=batch.labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
