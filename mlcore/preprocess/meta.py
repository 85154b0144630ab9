"""Where an image went on its way into a model, and the maps between the original image and the model's input frame.

Coordinates are continuous pixel coordinates: pixel (i, j) covers [j, j+1) x [i, i+1), so a box around a whole W x H
image is [0, 0, W, H]. Both resamplers we use (cv2 INTER_LINEAR, torchvision bilinear) align pixel centres this way,
with the scale resized/original per axis, so `x_model = x * scale_x + pad_left` describes where the pixels really
went. The scale is that exact ratio (not the nominal one before rounding the resized size), which also makes a box
round trip exact up to float rounding.

Masks are rasters, so their maps are not exact: into the model frame a binary mask is resampled nearest (pixel
centres), back out it is resampled bilinearly and thresholded. A mask boundary moves by at most about half a model
pixel plus half an original pixel each way; with no resize (scale 1) the round trip is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Array = TypeVar("Array", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class PreprocessMeta:
    """One image's geometry on its way into a model: original, resized, padding and the model input size."""

    original_size: tuple[int, int]  # height, width of the image as given
    resized_size: tuple[int, int]  # height, width after resizing, before padding
    scale: tuple[float, float]  # x, y: resized / original per axis
    pad: tuple[int, int, int, int]  # left, top, right, bottom (a batch's extra padding is in right and bottom)
    input_size: tuple[int, int]  # height, width of the tensor the model gets

    @classmethod
    def build(cls, original_size: tuple[int, int], resized_size: tuple[int, int],
              pad: tuple[int, int, int, int]) -> PreprocessMeta:
        (oh, ow), (rh, rw) = original_size, resized_size
        left, top, right, bottom = pad
        return cls(original_size=(oh, ow), resized_size=(rh, rw), scale=(rw / ow, rh / oh),
                   pad=(left, top, right, bottom), input_size=(rh + top + bottom, rw + left + right))

    def padded_to(self, input_size: tuple[int, int]) -> PreprocessMeta:
        """The same placement inside a larger canvas, extra padding at the bottom and right (batch padding)."""
        extra_h, extra_w = input_size[0] - self.input_size[0], input_size[1] - self.input_size[1]
        if extra_h < 0 or extra_w < 0:
            raise ValueError(f"cannot pad {self.input_size} to the smaller {input_size}")
        left, top, right, bottom = self.pad
        return PreprocessMeta.build(self.original_size, self.resized_size, (left, top, right + extra_w,
                                                                            bottom + extra_h))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessMeta:
        return cls(**{key: tuple(value) for key, value in data.items()})

    # -- points and boxes ---------------------------------------------------------------------------------------

    def points_to_model(self, points: Array) -> Array:
        """(..., 2) x, y in the original image -> the model input frame."""
        points = _as_float(points)
        return points * _like(points, self.scale) + _like(points, self.pad[:2])

    def points_from_model(self, points: Array, clip: bool = True) -> Array:
        """(..., 2) x, y in the model input frame -> the original image; clip: clamp into the image."""
        points = _as_float(points)
        out = (points - _like(points, self.pad[:2])) / _like(points, self.scale)
        return _clip(out, self.original_size[1], self.original_size[0]) if clip else out

    def boxes_to_model(self, boxes: Array) -> Array:
        """(..., 4) x1, y1, x2, y2 in the original image -> the model input frame."""
        return _pairs(self.points_to_model, _as_float(boxes))

    def boxes_from_model(self, boxes: Array, clip: bool = True) -> Array:
        """(..., 4) x1, y1, x2, y2 in the model frame -> the original image; clip: predictions may reach the padding."""
        return _pairs(lambda points: self.points_from_model(points, clip=clip), _as_float(boxes))

    def boxes_to_normalized_cxcywh(self, boxes: Array) -> Array:
        """Original-frame xyxy -> cx, cy, w, h over the image's valid (unpadded) region: Grounding DINO's label frame.

        The model predicts relative to the valid region, not the padded canvas: transformers'
        `generate_encoder_output_proposals` divides by the valid width and height, the decoder scales its reference
        points by `valid_ratios`, and `post_process_grounded_object_detection` multiplies by each image's own size
        (DETR's authors say the same: facebookresearch/detr#286). Over the valid region, a box covering the whole
        image is (0.5, 0.5, 1, 1) whatever canvas its batch was padded to.
        """
        x1, y1, x2, y2 = _unbind(self.boxes_to_model(boxes))
        left, top = self.pad[:2]
        height, width = self.resized_size
        x1, x2, y1, y2 = x1 - left, x2 - left, y1 - top, y2 - top
        return _stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height])

    def boxes_from_normalized_cxcywh(self, boxes: Array, clip: bool = True) -> Array:
        """Grounding DINO's predicted cx, cy, w, h (over the valid region) -> original-frame xyxy."""
        cx, cy, w, h = _unbind(_as_float(boxes))
        height, width = self.resized_size
        left, top = self.pad[:2]
        model_xyxy = _stack([(cx - w / 2) * width + left, (cy - h / 2) * height + top,
                             (cx + w / 2) * width + left, (cy + h / 2) * height + top])
        return self.boxes_from_model(model_xyxy, clip=clip)

    # -- masks --------------------------------------------------------------------------------------------------

    def masks_to_model(self, masks: Array) -> Array:
        """(..., H, W) binary masks at the original size -> (..., *input_size), nearest resize, zero padding.

        Same array type and dtype as given. Nearest uses pixel centres ("nearest-exact"), matching the box maps.
        """
        tensor, lead = _masks_as_batch(masks, self.original_size, "masks_to_model")
        dtype = tensor.dtype
        tensor = tensor.to(torch.uint8)
        left, top, right, bottom = self.pad
        if tensor.shape[0]:
            tensor = F.interpolate(tensor, size=self.resized_size, mode="nearest-exact")
            tensor = F.pad(tensor, (left, right, top, bottom), value=0)
        else:
            tensor = tensor.new_zeros((0, 1, *self.input_size))
        return _restore(tensor.to(dtype), lead, masks)

    def masks_from_model(self, masks: Array, threshold: float = 0.5, binarize: bool = True) -> Array:
        """(..., h, w) masks over the whole model input -> (..., *original_size).

        Any resolution covering the input frame works (SAM's 256x256 low-res logits, a 1/4-scale YOLO mask): it is
        upsampled bilinearly to the input size, the padding is cropped, and the rest is resized bilinearly to the
        original size. binarize: return `value > threshold` as bool (threshold 0.5 for 0/1 masks and probabilities,
        0.0 for logits); otherwise the resized float values.
        """
        tensor, lead = _masks_as_batch(masks, None, "masks_from_model")
        tensor = tensor.to(torch.float32)
        left, top, _, _ = self.pad
        (rh, rw), (oh, ow) = self.resized_size, self.original_size
        if tensor.shape[0]:
            if tuple(tensor.shape[-2:]) != self.input_size:
                tensor = F.interpolate(tensor, size=self.input_size, mode="bilinear", align_corners=False)
            tensor = tensor[..., top:top + rh, left:left + rw]
            tensor = F.interpolate(tensor, size=(oh, ow), mode="bilinear", align_corners=False)
        else:
            tensor = tensor.new_zeros((0, 1, oh, ow))
        out = tensor > threshold if binarize else tensor
        return _restore(out, lead, masks)

    def pixel_mask(self) -> torch.Tensor:
        """(*input_size) int64: 1 on image pixels, 0 on padding (Grounding DINO's `pixel_mask`)."""
        mask = torch.zeros(self.input_size, dtype=torch.int64)
        left, top, _, _ = self.pad
        mask[top:top + self.resized_size[0], left:left + self.resized_size[1]] = 1
        return mask


def stack_pixel_masks(metas: Sequence[PreprocessMeta]) -> torch.Tensor:
    """(N, H, W) pixel masks of a padded batch."""
    return torch.stack([meta.pixel_mask() for meta in metas])


def _as_float(values: Any) -> Any:
    if isinstance(values, torch.Tensor):
        return values if values.is_floating_point() else values.to(torch.float32)
    array = np.asarray(values)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def _like(reference: Any, values: Sequence[float]) -> Any:
    if isinstance(reference, torch.Tensor):
        return torch.tensor(values, dtype=reference.dtype, device=reference.device)
    return np.asarray(values, dtype=reference.dtype)


def _clip(points: Any, width: int, height: int) -> Any:
    x, y = points[..., 0], points[..., 1]
    if isinstance(points, torch.Tensor):
        return torch.stack([x.clamp(0, width), y.clamp(0, height)], dim=-1)
    return np.stack([np.clip(x, 0, width), np.clip(y, 0, height)], axis=-1)


def _pairs(map_points: Any, boxes: Any) -> Any:
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end in a dimension of 4 (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    points = boxes.reshape(*boxes.shape[:-1], 2, 2)
    return map_points(points).reshape(boxes.shape)


def _unbind(boxes: Any) -> list[Any]:
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end in a dimension of 4, got shape {tuple(boxes.shape)}")
    return [boxes[..., index] for index in range(4)]


def _stack(parts: list[Any]) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _masks_as_batch(masks: Any, expected: tuple[int, int] | None, caller: str) -> tuple[torch.Tensor, tuple]:
    tensor = masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.require(masks, requirements=["C", "W"]))
    if tensor.dim() < 2:
        raise ValueError(f"{caller} needs (..., height, width) masks, got shape {tuple(tensor.shape)}")
    if expected is not None and tuple(tensor.shape[-2:]) != tuple(expected):
        raise ValueError(f"{caller}: masks are {tuple(tensor.shape[-2:])}, the image is {tuple(expected)}")
    lead = tuple(tensor.shape[:-2])
    return tensor.reshape(-1, 1, *tensor.shape[-2:]), lead


def _restore(tensor: torch.Tensor, lead: tuple, like: Any) -> Any:
    tensor = tensor.reshape(*lead, *tensor.shape[-2:])
    return tensor if isinstance(like, torch.Tensor) else tensor.cpu().numpy()
