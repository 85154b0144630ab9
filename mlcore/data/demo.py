"""Small generated COCO datasets of shapes: the tests' data and the demo's.

- `make_demo_dataset`: flat shapes on plain backgrounds with exact polygons (each polygon is its object's mask):
  quick, the tests' data.
- `make_field_dataset`: the demo's data, scenes of the `field` domain (textured, cluttered, occluded; see
  `mlcore.data.shapes_world`), which the shipped demo teachers never saw in pretraining: a labelled set, and a pool
  of unlabelled images for the teachers to label. Masks are RLE of what stays visible.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from mlcore.data.masks import mask_to_rle, polygon_area
from mlcore.data.shapes_world import Scene, draw_scene
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


FIELD_CLASSES = ("circle", "square", "triangle")


def make_field_dataset(output_dir: str | Path, *, num_images: int = 60, unlabeled: int = 0,
                       image_size: tuple[int, int] = (256, 192), mode: DemoMode = "both", negatives: int = 2,
                       seed: int = 0) -> Path:
    """Write images/, annotations.json and, with `unlabeled` > 0, unlabeled/ (images only) into output_dir; return
    the annotation file's path. The last `negatives` labelled images have no objects."""
    output_dir = Path(output_dir)
    scenes = [draw_scene(np.random.default_rng([seed, image_id]), "field", image_size, shapes=FIELD_CLASSES,
                         max_objects=5, empty=image_id > num_images - negatives)
              for image_id in range(1, num_images + 1)]
    if unlabeled:
        (output_dir / "unlabeled").mkdir(parents=True, exist_ok=True)
        for index in range(1, unlabeled + 1):
            scene = draw_scene(np.random.default_rng([seed, 1_000_000 + index]), "field", image_size,
                               shapes=FIELD_CLASSES, max_objects=5)
            _save_if_changed(Image.fromarray(scene.image), output_dir / "unlabeled" / f"pool_{index:04d}.jpg")
    return write_scenes_coco(output_dir, scenes, FIELD_CLASSES, mode=mode, prefix="field",
                             description="mlcore demo: shapes in the field")


def write_scenes_coco(output_dir: str | Path, scenes: Sequence[Scene], class_names: Sequence[str], *,
                      mode: DemoMode = "both", prefix: str = "scene", description: str = "mlcore shapes scenes"
                      ) -> Path:
    """Generated scenes as a COCO dataset (images/ and annotations.json, RLE masks of what is visible)."""
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        for mask, box, name in zip(scene.masks, scene.boxes, scene.names):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotation = {"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": list(class_names).index(name) + 1, "iscrowd": 0}
            if mode in ("both", "boxes"):
                annotation["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            annotation["area"] = float(mask.sum()) if mode != "boxes" else (x2 - x1) * (y2 - y1)
            annotation["segmentation"] = mask_to_rle(mask) if mode in ("both", "masks") else []
            annotations.append(annotation)
        height, width = scene.image.shape[:2]
        file_name = f"{prefix}_{image_id:04d}.jpg"
        _save_if_changed(Image.fromarray(scene.image), output_dir / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    categories = [{"id": index, "name": name, "supercategory": "shape"}
                  for index, name in enumerate(class_names, start=1)]
    annotation_file = output_dir / "annotations.json"
    write_json_atomic(annotation_file, {"info": {"description": description, "version": "1.0"}, "licenses": [],
                                        "images": images, "annotations": annotations, "categories": categories})
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
