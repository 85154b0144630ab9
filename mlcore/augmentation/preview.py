"""A picture to check before training: a grid of augmented samples with their boxes, masks and class names.

If the boxes do not sit on the objects, or the objects are unrecognisable, the description (or the data) is wrong,
and it is far cheaper to see that here than after a training run.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mlcore.augmentation.pipeline import AugmentationPipeline, AugmentedSample
from mlcore.data.coco_dataset import CocoDataset
from mlcore.errors import DatasetError

TILE = 256  # pixels per tile side
GAP = 4  # pixels between tiles and around the grid
MASK_ALPHA = 0.45
BACKGROUND = (32, 32, 32)
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


@dataclass
class PreviewResult:
    path: Path
    rows: int
    cols: int
    width: int
    height: int
    samples: int
    objects: int  # objects drawn after augmentation, over all tiles


def grid_layout(n: int) -> tuple[int, int]:
    """(rows, cols): as square as possible, filled row by row."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def grid_size(n: int, tile: int = TILE, gap: int = GAP) -> tuple[int, int]:
    """(width, height) in pixels of the grid for n samples."""
    rows, cols = grid_layout(n)
    return cols * tile + (cols + 1) * gap, rows * tile + (rows + 1) * gap


def dataset_has_masks(dataset: CocoDataset, indices: list[int]) -> bool:
    return any(bool(dataset[i].has_masks.any()) for i in indices)


def pick_indices(dataset: CocoDataset, n: int, seed: int) -> list[int]:
    """n image indices, a random order without repeats until every image was used once."""
    if len(dataset) == 0:
        raise DatasetError("the annotation file has no images", fix="preview a dataset with images")
    order = np.random.default_rng(seed).permutation(len(dataset))
    return [int(order[i % len(order)]) for i in range(n)]


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError("image cannot be read", where=str(path), fix="check --images points at the image folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def render_preview(
    dataset: CocoDataset, pipeline: AugmentationPipeline, indices: list[int], tile: int = TILE, gap: int = GAP,
) -> tuple[np.ndarray, int]:
    """The RGB grid image and the number of objects drawn."""
    names = {category.id: category.name for category in dataset.categories}
    rows, cols = grid_layout(len(indices))
    width, height = grid_size(len(indices), tile, gap)
    grid = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    drawn = 0
    for position, index in enumerate(indices):
        sample = dataset[index]
        image = load_rgb(sample.image_path)
        masks = sample.masks() if pipeline.carries_masks else None
        augmented = pipeline(image, sample.boxes, sample.category_ids, masks)
        row, col = divmod(position, cols)
        y, x = gap + row * (tile + gap), gap + col * (tile + gap)
        grid[y:y + tile, x:x + tile] = draw_tile(augmented, names, tile, caption=f"#{sample.image_id}")
        drawn += len(augmented.boxes)
    return grid, drawn


def draw_tile(sample: AugmentedSample, names: dict[int, str], tile: int, caption: str = "") -> np.ndarray:
    """Masks blended at full resolution; the image fitted into the tile; outlines, boxes and names at tile scale."""
    image = sample.image.copy()
    if sample.masks is not None and len(sample.masks):
        overlay = image.copy()
        for mask, label in zip(sample.masks, sample.labels):
            overlay[mask.astype(bool)] = _color(label)
        image = cv2.addWeighted(overlay, MASK_ALPHA, image, 1 - MASK_ALPHA, 0)
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.full((tile, tile, 3), 114, dtype=np.uint8)
    off_x, off_y = (tile - new_w) // 2, (tile - new_h) // 2
    canvas[off_y:off_y + new_h, off_x:off_x + new_w] = cv2.resize(image, (new_w, new_h),
                                                                  interpolation=cv2.INTER_AREA)
    if sample.masks is not None:  # outlines show whether each box is the tight box of its mask
        for mask, label in zip(sample.masks, sample.labels):
            small = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, _color(label), 1, cv2.LINE_AA, offset=(off_x, off_y))
    for box, label in zip(sample.boxes, sample.labels):
        x0, y0 = off_x + box[0] * scale, off_y + box[1] * scale
        x1, y1 = x0 + box[2] * scale, y0 + box[3] * scale
        color = _color(label)
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), color, 1, cv2.LINE_AA)
        _text(canvas, names.get(int(label), str(label)), (round(x0), max(10, round(y0) - 2)), color)
    if caption:
        _text(canvas, f"{caption}  {len(sample.boxes)} obj", (3, tile - 4), (255, 255, 255))
    return canvas


def write_preview(
    annotation_file: str | Path, pipeline: AugmentationPipeline, output: str | Path, *,
    images_dir: str | Path | None = None, n: int = 16, seed: int = 0, tile: int = TILE,
    dataset: CocoDataset | None = None,
) -> PreviewResult:
    """Augment n images of the dataset and write the grid as PNG."""
    dataset = dataset or CocoDataset(annotation_file, images_dir)
    indices = pick_indices(dataset, n, seed)
    grid, drawn = render_preview(dataset, pipeline, indices, tile)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(output), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise DatasetError("cannot write the preview image", where=str(output), fix="use a .png path you can write")
    rows, cols = grid_layout(n)
    return PreviewResult(output, rows, cols, grid.shape[1], grid.shape[0], n, drawn)


def _color(label: object) -> tuple[int, int, int]:
    try:
        return PALETTE[int(label) % len(PALETTE)]
    except (TypeError, ValueError):
        return PALETTE[zlib.crc32(str(label).encode()) % len(PALETTE)]


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
    """Small text with a dark outline, readable on any background."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    cv2.putText(canvas, text, origin, font, size, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, font, size, color, 1, cv2.LINE_AA)
