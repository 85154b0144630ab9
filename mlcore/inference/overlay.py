"""Detections drawn over their image: a tint per mask, a box and a "name score" label per object (PIL)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlcore.inference.types import Detections

_fonts = threading.local()

# ultralytics' palette order, so colours look familiar next to its own plots.
PALETTE = [(255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49), (72, 249, 10),
           (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255),
           (52, 69, 147), (100, 115, 255), (0, 24, 236), (132, 56, 255), (82, 0, 133), (203, 56, 255),
           (255, 149, 200), (255, 55, 199)]


def class_color(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_detections(rgb: np.ndarray, detections: Detections, class_names: Sequence[str], *,
                    mask_alpha: float = 0.4) -> Image.Image:
    """A copy of the (H, W, 3) uint8 image with the detections drawn on; best-scoring objects drawn last (on top)."""
    height, width = rgb.shape[:2]
    order = list(range(len(detections)))[::-1]
    if detections.masks is not None and len(detections):
        canvas = rgb.astype(np.float32)
        masks = detections.masks.numpy()
        for index in order:
            color = np.asarray(class_color(int(detections.class_ids[index])), dtype=np.float32)
            _tint(canvas, masks[index], color, mask_alpha)
        image = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))
    else:  # nothing to tint: the float round trip would give the same pixels back
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(height, width) / 250))
    font = _font(max(10, round(min(height, width) / 40)))
    for index in order:
        class_id = int(detections.class_ids[index])
        color = class_color(class_id)
        x1, y1, x2, y2 = (float(value) for value in detections.boxes[index])
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line)
        name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        label = f"{name} {float(detections.scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        text_y = y1 - text_h - 2 * line if y1 - text_h - 2 * line >= 0 else y1  # inside the box at the top edge
        text_x = min(max(x1, 0), max(width - text_w - 2 * line, 0))
        draw.rectangle([text_x, text_y, text_x + text_w + 2 * line, text_y + text_h + 2 * line], fill=color)
        draw.text((text_x + line - left, text_y + line - top), label, fill=_text_color(color), font=font)
    return image


def _tint(canvas: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float) -> None:
    """Blend color into canvas under mask, in place; only the rows and columns the mask touches are indexed."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    region, inside = canvas[window], mask[window]
    region[inside] = region[inside] * (1 - alpha) + color * alpha


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The default font at size, loaded once per thread (a FreeType face is not safe to share across threads)."""
    fonts = _fonts.__dict__.setdefault("by_size", {})
    if size not in fonts:
        try:
            fonts[size] = ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable default font
        except TypeError:
            fonts[size] = ImageFont.load_default()
    return fonts[size]


def _text_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = color
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)
