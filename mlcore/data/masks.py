"""COCO segmentations (polygons, uncompressed and compressed RLE): parsing, checks, tight boxes and areas.

A box made here is the tight box of the mask: for polygons the extent of their vertices (clipped to the image,
which is what COCO's own boxes are), for RLE the extent of its foreground pixels. Areas are pixel counts of the
rasterized mask, as pycocotools computes them for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class MaskGeometry:
    bbox: tuple[float, float, float, float]  # x, y, width, height
    area: float


class SegmentationProblem(ValueError):
    """The segmentation cannot be used; `code` and the message become a finding."""

    def __init__(self, code: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.code = code
        self.fix = fix


def segmentation_kind(segmentation: Any) -> str:
    """'none', 'polygon', 'rle' (uncompressed, counts a list), 'compressed_rle' (counts a string) or 'unknown'."""
    if segmentation is None or segmentation == [] or segmentation == {}:
        return "none"
    if isinstance(segmentation, list):
        if all(isinstance(part, list) for part in segmentation):
            return "polygon"
        if all(isinstance(value, (int, float)) for value in segmentation):
            return "flat_polygon"
        return "unknown"
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        counts = segmentation["counts"]
        if isinstance(counts, list):
            return "rle"
        if isinstance(counts, str):
            return "compressed_rle"
    return "unknown"


def clean_polygon_parts(parts: list[list[Any]]) -> tuple[list[list[float]], list[str]]:
    """Keep the parts that are real polygons; return them and one note per dropped part."""
    kept: list[list[float]] = []
    notes: list[str] = []
    for index, part in enumerate(parts):
        if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in part):
            notes.append(f"part {index} has a non-numeric, NaN or infinite coordinate")
        elif len(part) % 2:
            notes.append(f"part {index} has an odd number of coordinates ({len(part)})")
        elif len(part) < 6:
            notes.append(f"part {index} has {len(part) // 2} point(s); a polygon needs at least 3")
        else:
            kept.append([float(value) for value in part])
    return kept, notes


def polygon_geometry(parts: list[list[float]], height: int, width: int) -> MaskGeometry:
    """Tight box of all parts (clipped to the image) and the pixel area of their union."""
    coords = np.concatenate([np.asarray(part, dtype=np.float64) for part in parts])
    xs, ys = np.clip(coords[0::2], 0, width), np.clip(coords[1::2], 0, height)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    rles = mask_utils.frPyObjects(parts, height, width)
    rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    return MaskGeometry(bbox=(x0, y0, x1 - x0, y1 - y0), area=float(mask_utils.area(rle)))


def rle_geometry(segmentation: dict[str, Any], height: int, width: int) -> MaskGeometry:
    """Check an RLE against its image and return its pixel extent and area."""
    size = segmentation.get("size")
    if not (isinstance(size, list) and len(size) == 2 and list(size) == [height, width]):
        raise SegmentationProblem(
            "rle_size_mismatch",
            f"RLE size {size} does not match the image's [height, width] = [{height}, {width}]",
            "re-encode the mask at the image's resolution; RLE 'size' is [height, width]",
        )
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(isinstance(value, int) and value >= 0 for value in counts):
            raise SegmentationProblem(
                "rle_invalid_counts", "uncompressed RLE counts must be non-negative integers",
                "write 'counts' as run lengths (integers >= 0), starting with a background run",
            )
        if sum(counts) != height * width:
            raise SegmentationProblem(
                "rle_invalid_counts",
                f"uncompressed RLE counts sum to {sum(counts)}, not height*width = {height * width}",
                "the runs must cover every pixel exactly once, column-major (Fortran order)",
            )
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": [height, width], "counts": counts.encode("ascii", errors="replace")}
    area = float(mask_utils.area(rle))
    x, y, w, h = (float(value) for value in mask_utils.toBbox(rle))
    if area > height * width or x + w > width or y + h > height:
        raise SegmentationProblem(
            "rle_invalid_counts", "compressed RLE does not decode to a mask of its size",
            "re-encode the mask with pycocotools.mask.encode on a Fortran-ordered uint8 array",
        )
    return MaskGeometry(bbox=(x, y, w, h), area=area)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Binary HxW mask -> compressed RLE with a JSON-ready string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Any COCO segmentation -> binary HxW uint8 mask (polygon parts and RLE alike)."""
    kind = segmentation_kind(segmentation)
    if kind == "flat_polygon":
        segmentation, kind = [segmentation], "polygon"
    if kind == "polygon":
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif kind == "rle":
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif kind == "compressed_rle":
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    else:
        return np.zeros((height, width), dtype=np.uint8)
    return mask_utils.decode(rle)


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel extent of a binary mask as x, y, width, height; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])
