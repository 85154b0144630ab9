"""COCO segmentations (polygons, uncompressed and compressed RLE): parsing, checks, tight boxes and areas.

A box made here is the tight box of the mask: for polygons the extent of their vertices (clipped to the image,
which is what COCO's own boxes are), for RLE the extent of its foreground pixels. Areas follow COCO too: the
polygon's own area for polygons, the pixel count for RLE.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class MaskGeometry:
    bbox: tuple[float, float, float, float]  # x, y, width, height
    area: float
    is_box: bool = False  # one axis-aligned rectangle: the "mask" carries no shape (VIA writes boxes this way)
    overflow: float = 0.0  # how far, in pixels, the polygon reaches outside the image (its box and area are clipped)


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


def clean_polygon_parts(parts: list[list[Any]], numeric: bool = False) -> tuple[list[list[float]], list[str]]:
    """Keep the parts that are real polygons; return them and one note per dropped part.

    `numeric=True` says every value is already a finite float (a typed JSON decode guarantees it), which skips the
    per-value check: at COCO scale that check is most of validation's time.
    """
    kept: list[list[float]] = []
    notes: list[str] = []
    for index, part in enumerate(parts):
        if not numeric and not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) for value in part
        ):
            notes.append(f"part {index} has a non-numeric, NaN or infinite coordinate")
        elif len(part) % 2:
            notes.append(f"part {index} has an odd number of coordinates ({len(part)})")
        elif len(part) < 6:
            notes.append(f"part {index} has {len(part) // 2} point(s); a polygon needs at least 3")
        else:
            kept.append(part if numeric else [float(value) for value in part])
    return kept, notes


def polygon_area(part: list[float]) -> float:
    """Shoelace area of one polygon part: the exact area COCO writes for polygon annotations."""
    xs, ys = part[0::2], part[1::2]
    twice = sum(map(operator.mul, xs, ys[1:] + ys[:1])) - sum(map(operator.mul, xs[1:] + xs[:1], ys))
    return abs(twice) / 2.0


def polygon_geometry(parts: list[list[float]], height: int, width: int) -> MaskGeometry:
    """Tight box of all parts (clipped to the image) and their area.

    The area is COCO's: the polygons' own area (sum over parts), so a cleaned copy keeps COCO's areas as they are.
    A polygon reaching outside the image is rasterized instead, so only the part inside counts.
    """
    # Plain min/max over short lists beats numpy's per-call overhead by ~10x here (called once per annotation).
    x0 = min(min(part[0::2]) for part in parts)
    x1 = max(max(part[0::2]) for part in parts)
    y0 = min(min(part[1::2]) for part in parts)
    y1 = max(max(part[1::2]) for part in parts)
    overflow = max(-x0, -y0, x1 - width, y1 - height, 0.0)
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        area = sum(polygon_area(part) for part in parts)
    else:
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        rles = mask_utils.frPyObjects(parts, height, width)
        area = float(mask_utils.area(rles[0] if len(rles) == 1 else mask_utils.merge(rles)))
    return MaskGeometry(bbox=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), area=float(area),
                        is_box=len(parts) == 1 and _is_rectangle(parts[0]), overflow=float(overflow))


def _is_rectangle(part: list[float]) -> bool:
    """Four corners (a closing repeat of the first allowed) on two x values and two y values."""
    if len(part) not in (8, 10):  # the common case, decided without building points
        return False
    points = list(zip(part[0::2], part[1::2]))
    if len(points) == 5 and points[0] == points[4]:
        points = points[:4]
    return len(points) == 4 and len(set(points)) == 4 and len({x for x, _ in points}) == 2 \
        and len({y for _, y in points}) == 2


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
        runs = compressed_rle_runs(counts)
        if runs is None or min(runs, default=0) < 0 or sum(runs) != height * width:
            raise SegmentationProblem(
                "rle_invalid_counts", "compressed RLE does not decode to a mask of its size",
                "re-encode the mask with pycocotools.mask.encode on a Fortran-ordered uint8 array",
            )
        rle = {"size": [height, width], "counts": counts.encode("ascii")}
    area = float(mask_utils.area(rle))
    x, y, w, h = (float(value) for value in mask_utils.toBbox(rle))
    return MaskGeometry(bbox=(x, y, w, h), area=area)


def compressed_rle_runs(counts: str) -> list[int] | None:
    """Run lengths of a compressed RLE string (pycocotools' rleFrString, in Python); None when it is malformed.

    pycocotools trusts the string and reads past the mask for a bad one, so it must be checked before use.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


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


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) binary mask -> COCO compressed RLE with text counts (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}
