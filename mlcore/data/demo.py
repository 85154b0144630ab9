"""A small generated COCO dataset of simple shapes with exact polygons: the demo's and the tests' data.

Every object is drawn from its own polygon, so the polygon is the ground-truth mask (up to rasterization).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from mlcore.data.masks import polygon_area
from mlcore.io import atomic_open, write_json_atomic

DemoMode = Literal["both", "boxes", "masks"]
CATEGORIES = [
    {"id": 1, "name": "square", "supercategory": "shape"},
    {"id": 2, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]
COLORS = [(220, 60, 60), (60, 160, 80), (60, 90, 220), (230, 180, 40), (160, 70, 200)]


def _shape_polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[float]:
    sides = {"square": 4, "circle": 24, "triangle": 3}[kind]
    start = angle + (math.pi / 4 if kind == "square" else 0.0)
    points = []
    for k in range(sides):
        theta = start + 2 * math.pi * k / sides
        points += [round(cx + radius * math.cos(theta), 2), round(cy + radius * math.sin(theta), 2)]
    return points


def make_demo_dataset(
    output_dir: str | Path,
    *,
    mode: DemoMode = "both",
    num_images: int = 24,
    image_size: tuple[int, int] = (320, 240),
    max_objects: int = 4,
    negatives: int = 2,
    seed: int = 0,
) -> Path:
    """Write images/ and annotations.json into output_dir; return the annotation file's path.

    mode 'both' writes bbox and polygons, 'boxes' only bbox (segmentation: []), 'masks' only polygons.
    The last `negatives` images have no objects (background examples).
    """
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = image_size
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        background = tuple(int(v) for v in rng.integers(200, 256, size=3))
        image = Image.new("RGB", image_size, background)
        draw = ImageDraw.Draw(image)
        count = 0 if image_id > num_images - negatives else int(rng.integers(1, max_objects + 1))
        for _ in range(count):
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            radius = float(rng.uniform(14, min(width, height) / 5))
            cx = float(rng.uniform(radius, width - radius))
            cy = float(rng.uniform(radius, height - radius))
            polygon = _shape_polygon(category["name"], cx, cy, radius, float(rng.uniform(0, math.pi)))
            draw.polygon(polygon, fill=COLORS[int(rng.integers(len(COLORS)))])
            xs, ys = polygon[0::2], polygon[1::2]
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category["id"],
                          "iscrowd": 0}
            if mode in ("both", "boxes"):
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                annotation["bbox"] = [round(v, 2) for v in box]
                # COCO's area: the polygon's own area with masks, the box's without.
                annotation["area"] = round(polygon_area(polygon) if mode == "both" else box[2] * box[3], 2)
            annotation["segmentation"] = [polygon] if mode in ("both", "masks") else []
            annotations.append(annotation)
        file_name = f"shapes_{image_id:04d}.jpg"
        _save_if_changed(image, output_dir / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    annotation_file = output_dir / "annotations.json"
    write_json_atomic(annotation_file, {
        "info": {"description": "mlcore demo shapes", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    })
    return annotation_file


def _save_if_changed(image: Image.Image, path: Path) -> None:
    """Leave an identical file untouched: a regenerated demo keeps its images' mtimes, so cached stages still hit."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    data = buffer.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_open(path) as handle:
        handle.write(data)
