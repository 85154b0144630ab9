"""Generated scenes of named shapes, in three domains: what the demo teachers learn from and what the demo asks of them.

- `studio`: the first pretraining corpus. Saturated shapes of six kinds on varied backgrounds (flat, gradients,
  blotches, scribbles), apart. The demo teachers learn the shapes from scratch on it.
- `varied`: the second pretraining corpus, the variation any real corpus has: every saturation and brightness,
  procedural textures (value noise, mosaics) beside the studio's backgrounds, sensor noise and blur, a wider range of
  sizes, shapes that may overlap. None of the field's textures (stripes, checks) or clutter (pebbles, twigs).
- `field`: the demo's domain, never seen in pretraining. Muted colours on textured backgrounds (noise, stripes,
  checks) with clutter that is not a shape, smaller objects, and occlusion: a later shape hides part of an earlier
  one, whose mask and box are what stays visible.

A scene is drawn from each object's polygon into a label image, so every mask is exact and every box is tight to
its visible mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Domain = Literal["studio", "varied", "field"]
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
# Smallest visible part of an occluded object worth labelling (fraction of its own drawn area).
MIN_VISIBLE = 0.4


@dataclass(frozen=True)
class Scene:
    """One image and its objects: masks (n, H, W) bool of what is visible, xyxy boxes tight to them, shape names."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray
    boxes: np.ndarray  # (n, 4) float32 xyxy, pixel edges (x2 = last column + 1)
    names: tuple[str, ...]


def shape_polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    """The outline of one shape as (x, y) points."""
    if kind == "star":
        radii = [radius if k % 2 == 0 else radius * 0.45 for k in range(10)]
        return _ring(cx, cy, radii, angle)
    if kind == "cross":
        arm = 0.36
        outline = [(arm, 1), (arm, arm), (1, arm), (1, -arm), (arm, -arm), (arm, -1), (-arm, -1), (-arm, -arm),
                   (-1, -arm), (-1, arm), (-arm, arm), (-arm, 1)]
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + radius * 0.8 * (x * cos - y * sin), cy + radius * 0.8 * (x * sin + y * cos)) for x, y in outline]
    sides = {"circle": 32, "square": 4, "triangle": 3, "hexagon": 6}[kind]
    start = angle + (math.pi / 4 if kind == "square" else 0.0)
    return _ring(cx, cy, [radius] * sides, start)


def _ring(cx: float, cy: float, radii: list[float], start: float) -> list[tuple[float, float]]:
    count = len(radii)
    return [(cx + r * math.cos(start + 2 * math.pi * k / count), cy + r * math.sin(start + 2 * math.pi * k / count))
            for k, r in enumerate(radii)]


def draw_scene(rng: np.random.Generator, domain: Domain, size: tuple[int, int], *, shapes: tuple[str, ...] = SHAPES,
               max_objects: int = 6, empty: bool = False) -> Scene:
    """One random scene of `domain` (width, height = size); `empty`: background only (a negative image)."""
    width, height = size
    image = _background(rng, domain, width, height)
    draw = ImageDraw.Draw(image)
    labels = Image.new("I", size, 0)
    label_draw = ImageDraw.Draw(labels)
    names: list[str] = []
    drawn_area: list[int] = []
    count = 0 if empty else int(rng.integers(1, max_objects + 1))
    short = min(width, height)
    low, high = {"studio": (0.07, 0.22), "varied": (0.05, 0.22), "field": (0.06, 0.17)}[domain]
    apart = domain == "studio" or (domain == "varied" and rng.random() < 0.5)
    for _ in range(count):
        kind = shapes[int(rng.integers(len(shapes)))]
        radius = float(rng.uniform(low * short, high * short))
        cx, cy = float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))
        polygon = shape_polygon(kind, cx, cy, radius, float(rng.uniform(0, 2 * math.pi)))
        if apart and _overlaps(np.asarray(labels), polygon, size):
            continue  # the studio keeps shapes apart; the field lets them hide each other
        colour = _shape_colour(rng, domain)
        draw.polygon(polygon, fill=colour)
        names.append(kind)
        label_draw.polygon(polygon, fill=len(names))
        drawn_area.append(int((_mask_of(polygon, size)).sum()))
    if domain == "field" or (domain == "varied" and rng.random() < 0.6):
        image = _finish(rng, image, noise=8.0 if domain == "field" else float(rng.uniform(2, 14)),
                        blur=(0.3, 0.9) if domain == "field" else (0.0, 1.2))
    label_array = np.asarray(labels)
    masks, boxes, kept = [], [], []
    for index, name in enumerate(names, start=1):
        mask = label_array == index
        if mask.sum() < max(MIN_VISIBLE * drawn_area[index - 1], 4):
            continue
        ys, xs = np.nonzero(mask)
        masks.append(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        kept.append(name)
    return Scene(image=np.asarray(image, dtype=np.uint8),
                 masks=np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool),
                 boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4), names=tuple(kept))


def _mask_of(polygon: list[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("1", size, 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    return np.asarray(canvas, dtype=bool)


def _overlaps(labels: np.ndarray, polygon: list[tuple[float, float]], size: tuple[int, int]) -> bool:
    return bool((labels[_mask_of(polygon, size)] > 0).any())


def _shape_colour(rng: np.random.Generator, domain: Domain) -> tuple[int, int, int]:
    """Saturated in the studio; muted (less saturated, mid value) in the field; anything in between when varied."""
    saturation, value = {"studio": ((0.75, 1.0), (0.7, 1.0)), "varied": ((0.2, 1.0), (0.35, 1.0)),
                         "field": ((0.35, 0.7), (0.45, 0.85))}[domain]
    return _hsv(float(rng.uniform(0, 1)), float(rng.uniform(*saturation)), float(rng.uniform(*value)))


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    import colorsys

    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, saturation, value))  # type: ignore[return-value]


def _background(rng: np.random.Generator, domain: Domain, width: int, height: int) -> Image.Image:
    if domain == "field":
        return _field_background(rng, width, height)
    if domain == "varied" and rng.random() < 0.5:
        return _texture_background(rng, width, height)
    return _studio_background(rng, width, height)


def _studio_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Flat, a gradient, soft blotches or thin scribbles, light or dark: the variety that lets shapes generalise."""
    style = int(rng.integers(4))
    base = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.35)), float(rng.choice([0.15, 0.9]) +
                                                                                  rng.uniform(-0.1, 0.1))), float)
    canvas = np.broadcast_to(base, (height, width, 3)).copy()
    if style == 1:
        other = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.4)), float(rng.uniform(0.2, 0.95))), float)
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width]
        ramp = (xs * math.cos(angle) + ys * math.sin(angle))
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        canvas = canvas * (1 - ramp[..., None]) + other * ramp[..., None]
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    if style == 2:
        blotches = Image.new("RGB", (width, height), tuple(int(v) for v in base))
        draw = ImageDraw.Draw(blotches)
        for _ in range(int(rng.integers(3, 7))):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.15, 0.4) * min(width, height)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_hsv(float(rng.uniform()), float(rng.uniform(0, 0.4)),
                                                                 float(rng.uniform(0.3, 0.95))))
        image = blotches.filter(ImageFilter.GaussianBlur(radius=min(width, height) / 12))
    if style == 3:
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 6))):
            points = np.cumsum(rng.normal(0, min(width, height) / 10, size=(8, 2)), axis=0) + \
                [rng.uniform(0, width), rng.uniform(0, height)]
            draw.line([tuple(p) for p in points], width=int(rng.integers(1, 3)),
                      fill=_hsv(float(rng.uniform()), float(rng.uniform(0, 0.5)), float(rng.uniform(0.2, 0.9))))
    return image


def _texture_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Value noise (one to four octaves, smooth to grainy) between two colours, or a mosaic of random tiles."""
    low = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.8)), float(rng.uniform(0.1, 0.9))))
    high = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.8)), float(rng.uniform(0.1, 0.9))))
    if rng.random() < 0.7:
        weight = np.zeros((height, width))
        for octave in range(int(rng.integers(1, 5))):
            cells = int(rng.integers(3, 9)) * 2 ** octave
            grid = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
            weight += np.asarray(grid.resize((width, height), Image.BICUBIC), float) / 255 / 2 ** octave
        weight = (weight - weight.min()) / max(float(np.ptp(weight)), 1e-6)
        canvas = low * (1 - weight[..., None]) + high * weight[..., None]
        return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    image = Image.new("RGB", (width, height), tuple(int(v) for v in low))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 20))):
        x, y = rng.uniform(-0.2, 1) * width, rng.uniform(-0.2, 1) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.1, 0.5) * height
        mix = float(rng.uniform())
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in low * (1 - mix) + high * mix))
    return image


def _field_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Texture (stripes or checks under noise) in earthy muted tones, then clutter that is not a named shape."""
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    a = np.array(_hsv(float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.35, 0.7))))
    b = np.array(_hsv(float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.35, 0.7))))
    period = float(rng.uniform(6, 18))
    angle = float(rng.uniform(0, math.pi))
    if rng.random() < 0.5:
        pattern = (np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period) > 0).astype(float)
    else:
        pattern = ((xs // period + ys // period) % 2).astype(float)
    canvas = a * pattern[..., None] + b * (1 - pattern[..., None])
    canvas += rng.normal(0, 12, size=canvas.shape)
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(int(rng.integers(3, 9))):  # clutter: pebbles and twigs
        colour = _hsv(float(rng.uniform()), float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.25, 0.8)))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if rng.random() < 0.5:
            rx, ry = rng.uniform(0.01, 0.05) * short, rng.uniform(0.01, 0.05) * short
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=colour)
        else:
            length, turn = rng.uniform(0.1, 0.3) * short, rng.uniform(0, 2 * math.pi)
            draw.line([(x, y), (x + length * math.cos(turn), y + length * math.sin(turn))], fill=colour,
                      width=int(rng.integers(1, 4)))
    return image


def _finish(rng: np.random.Generator, image: Image.Image, noise: float, blur: tuple[float, float]) -> Image.Image:
    """Sensor noise (standard deviation `noise`) and a touch of blur over the whole scene, shapes included."""
    array = np.asarray(image, dtype=float) + rng.normal(0, noise, size=(image.height, image.width, 3))
    blurred = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    return blurred.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*blur))))
