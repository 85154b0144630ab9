"""A picture a person reads faster than a table: the same test images, ground truth beside each model's predictions.

Rows are images, columns are "ground truth" then each model (the teachers, the student, ...), drawn from the COCO
results files the evaluation stage wrote (`predictions.json`): boxes with class and score, masks tinted when the
records carry them. Only predictions at or above a score threshold are drawn, as a user would see them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.masks import decode_to_mask
from mlcore.io import atomic_open

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]
TILE_WIDTH = 256
HEADER = 18


def prediction_grid(annotation_file: str | os.PathLike[str], predictions: Mapping[str, str | os.PathLike[str]],
                    output: str | os.PathLike[str], *, images_root: str | os.PathLike[str] | None = None,
                    images: int = 4, score_threshold: float = 0.3) -> Path | None:
    """Write the grid PNG to OUTPUT for the first IMAGES test images that have objects; None when there is no such
    image. predictions: column title -> COCO results file (missing files are skipped)."""
    dataset = CocoDataset(annotation_file, images_root)
    chosen = [dataset[index] for index in range(len(dataset)) if len(dataset[index].boxes)][:images]
    if not chosen:
        return None
    names = {int(category.id): category.name for category in dataset.categories}
    columns: dict[str, dict[int, list[dict[str, Any]]]] = {"ground truth": {}}
    for sample in chosen:
        columns["ground truth"][sample.image_id] = _truth(sample)
    for title, path in predictions.items():
        if Path(path).is_file():
            columns[title] = _by_image(json.loads(Path(path).read_text(encoding="utf-8")), score_threshold)
    tiles = [[_tile(sample, column.get(sample.image_id, []), names) for column in columns.values()]
             for sample in chosen]
    tile_height = max(tile.height for row in tiles for tile in row)
    grid = Image.new("RGB", (TILE_WIDTH * len(columns), HEADER + tile_height * len(chosen)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for column, title in enumerate(columns):
        draw.text((column * TILE_WIDTH + 4, 3), title, fill=(0, 0, 0))
    for row, row_tiles in enumerate(tiles):
        for column, tile in enumerate(row_tiles):
            grid.paste(tile, (column * TILE_WIDTH, HEADER + row * tile_height))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(output) as handle:
        grid.save(handle, format="PNG")
    return output


def _truth(sample: Any) -> list[dict[str, Any]]:
    masks = sample.masks() if sample.has_masks.any() else None
    found = []
    for index, (box, category) in enumerate(zip(sample.boxes.tolist(), sample.category_ids.tolist())):
        record: dict[str, Any] = {"bbox": box, "category_id": int(category)}
        if masks is not None and sample.has_masks[index]:
            record["mask"] = masks[index]
        found.append(record)
    return found


def _by_image(records: Sequence[Mapping[str, Any]], score_threshold: float) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        if float(record.get("score", 1.0)) >= score_threshold:
            grouped.setdefault(int(record["image_id"]), []).append(dict(record))
    return grouped


def _tile(sample: Any, records: Sequence[Mapping[str, Any]], names: Mapping[int, str]) -> Image.Image:
    image = Image.open(sample.image_path).convert("RGB")
    scale = TILE_WIDTH / image.width
    canvas = np.asarray(image, dtype=np.float32)
    for record in records:
        colour = np.array(PALETTE[int(record["category_id"]) % len(PALETTE)], dtype=np.float32)
        mask = record.get("mask")
        if mask is None and isinstance(record.get("segmentation"), dict):
            mask = decode_to_mask(record["segmentation"], image.height, image.width)
        if mask is not None:
            region = np.asarray(mask, dtype=bool)
            canvas[region] = 0.55 * canvas[region] + 0.45 * colour
    tile = Image.fromarray(canvas.clip(0, 255).astype(np.uint8)).resize(
        (TILE_WIDTH, max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(tile)
    for record in records:
        colour = PALETTE[int(record["category_id"]) % len(PALETTE)]
        x, y, w, h = (float(v) * scale for v in record["bbox"])
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=2)
        label = names.get(int(record["category_id"]), str(record["category_id"]))
        if "score" in record:
            label += f" {float(record['score']):.2f}"
        draw.text((x + 2, max(0.0, y - 11)), label, fill=colour)
    return tile
