"""Size rules and resampling: where each strategy puts an image, and the pixel ops that reproduce each reference.

The size rules copy the reference code's arithmetic, rounding included, because a one-pixel difference in the
resized size changes every pixel a teacher or the student sees:
- keep_aspect_ratio: transformers' `get_size_with_aspect_ratio` (Grounding DINO / DETR processors);
- resize_longest_side: transformers' `SamImageProcessor._get_preprocess_shape` (`int(x + 0.5)`);
- letterbox: ultralytics' `LetterBox` (Python `round`, centred padding split with `round(d - 0.1)` / `round(d + 0.1)`).
Two deliberate differences, both for extreme sizes only: every side is kept at least 1 pixel (the transformers rules
give 0 for very thin images, which their resize then rejects), and keep_aspect_ratio never exceeds longest_edge
(transformers returns an image unresized when its short side already equals the capped target, even if its long side
is past the cap, e.g. 600x1334 or 1x2000 with 800/1333), so a fixed pad_to >= longest_edge always holds the image.

Pixels: letterbox resizes with cv2 INTER_LINEAR (no antialiasing), as ultralytics does; the other two resize with
torchvision's antialiased bilinear on uint8, which is the op the transformers processors call, so their outputs match
ours exactly (measured max abs difference 0 after normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mlcore.config.schemas.data import ImagePreprocessing

Size = tuple[int, int]  # height, width
Padding = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class Placement:
    """Where one image lands: its resized size and the padding around it (before any batch padding)."""

    resized_size: Size
    pad: Padding


def keep_aspect_ratio_size(height: int, width: int, shortest_edge: int, longest_edge: int) -> Size:
    """Short side to shortest_edge unless that pushes the long side past longest_edge (transformers' rule)."""
    size, raw_size = shortest_edge, None
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > longest_edge:
        raw_size = longest_edge * short / long
        size = int(round(raw_size))
    already_sized = (height <= width and height == size) or (width <= height and width == size)
    if already_sized and long <= longest_edge:  # transformers skips the cap check here; we keep the cap
        new_h, new_w = height, width
    elif width < height:
        new_w = size
        new_h = int((raw_size if raw_size is not None else size) * height / width)
    else:
        new_h = size
        new_w = int((raw_size if raw_size is not None else size) * width / height)
    return max(new_h, 1), max(new_w, 1)


def longest_side_size(height: int, width: int, longest_edge: int) -> Size:
    """Long side to longest_edge, the other side in proportion (SAM's rule)."""
    scale = longest_edge * 1.0 / max(height, width)
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def letterbox_placement(height: int, width: int, canvas: Size, longest_edge: int) -> Placement:
    """Fit inside the canvas (and longest_edge), centred, padding split as ultralytics splits it."""
    ratio = min(canvas[0] / height, canvas[1] / width, longest_edge / max(height, width))
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    half_w, half_h = (canvas[1] - new_w) / 2, (canvas[0] - new_h) / 2
    top, bottom = round(half_h - 0.1), round(half_h + 0.1)
    left, right = round(half_w - 0.1), round(half_w + 0.1)
    return Placement(resized_size=(new_h, new_w), pad=(left, top, right, bottom))


def place(config: ImagePreprocessing, height: int, width: int) -> Placement:
    """The strategy's placement of a height x width image; without pad_to nothing is padded (a batch pads later)."""
    if config.strategy == "letterbox":
        assert config.pad_to is not None  # the schema requires it
        return letterbox_placement(height, width, config.pad_to, config.longest_edge)
    if config.strategy == "keep_aspect_ratio":
        assert config.shortest_edge is not None  # the schema requires it
        resized = keep_aspect_ratio_size(height, width, config.shortest_edge, config.longest_edge)
    else:
        resized = longest_side_size(height, width, config.longest_edge)
    if config.pad_to is None:
        return Placement(resized_size=resized, pad=(0, 0, 0, 0))
    return Placement(resized_size=resized, pad=(0, 0, config.pad_to[1] - resized[1], config.pad_to[0] - resized[0]))


def resize_pixels(rgb: np.ndarray, size: Size, strategy: str) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) uint8 tensor, resampled the way the strategy's reference resamples."""
    if strategy == "letterbox":
        if rgb.shape[:2] != size:
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return _chw(rgb)
    # Imported here: torchvision pulls in torch._dynamo (seconds), which only this path needs.
    from torchvision.transforms.v2 import functional as tvF

    return tvF.resize(_chw(rgb).contiguous(), list(size), interpolation=tvF.InterpolationMode.BILINEAR,
                      antialias=True)


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)
