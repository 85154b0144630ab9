"""A box made from a mask is the tight box of that mask, for polygons and RLE alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from mlcore.data.masks import (clean_polygon_parts, decode_to_mask, mask_to_rle, polygon_geometry, rle_geometry,
                               segmentation_kind, tight_box)

HEIGHT, WIDTH = 60, 80


@st.composite
def polygons(draw) -> list[list[float]]:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        cx = draw(st.floats(5, WIDTH - 5))
        cy = draw(st.floats(5, HEIGHT - 5))
        n = draw(st.integers(3, 12))
        radii = draw(st.lists(st.floats(2, 30), min_size=n, max_size=n))
        # One vertex per equal sector, jittered inside it: no angular gap reaches pi, so the polygon is simple
        # (a self-intersecting one has no well-defined area, for COCO's shoelace convention or anyone's).
        jitter = draw(st.lists(st.floats(0, 0.5), min_size=n, max_size=n))
        angles = 2 * np.pi * (np.arange(n) + np.asarray(jitter)) / n
        part = []
        for r, a in zip(radii, angles):
            part += [float(cx + r * np.cos(a)), float(cy + r * np.sin(a))]
        parts.append(part)
    return parts


@st.composite
def binary_masks(draw) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for _ in range(draw(st.integers(1, 4))):
        x0, y0 = draw(st.integers(0, WIDTH - 1)), draw(st.integers(0, HEIGHT - 1))
        x1, y1 = draw(st.integers(x0 + 1, WIDTH)), draw(st.integers(y0 + 1, HEIGHT))
        mask[y0:y1, x0:x1] = 1
    return mask


@settings(max_examples=150, deadline=None)
@given(polygons())
def test_polygon_box_is_tight_box_of_its_mask(parts):
    """The box is the polygon's exact extent; its rasterized mask stays inside it (to the pixel grid)."""
    geometry = polygon_geometry(parts, HEIGHT, WIDTH)
    mask = decode_to_mask(parts, HEIGHT, WIDTH)
    x, y, w, h = geometry.bbox
    coords = np.concatenate([np.asarray(p) for p in parts])
    xs, ys = np.clip(coords[0::2], 0, WIDTH), np.clip(coords[1::2], 0, HEIGHT)
    assert (x, y, x + w, y + h) == pytest.approx((xs.min(), ys.min(), xs.max(), ys.max()))
    pixel_box = tight_box(mask)
    if pixel_box is not None:  # a sliver thinner than a pixel may rasterize to nothing
        px, py, pw, ph = pixel_box
        assert x - 1 <= px and y - 1 <= py and px + pw <= x + w + 1 and py + ph <= y + h + 1


@settings(max_examples=150, deadline=None)
@given(polygons())
def test_polygon_area_is_the_area_of_its_mask(parts):
    """Inside the image: the polygon's own area (COCO's), within a boundary pixel of the pixel count.
    Reaching outside: the pixel count of the part inside, exactly."""
    geometry = polygon_geometry(parts, HEIGHT, WIDTH)
    coords = np.concatenate([np.asarray(p) for p in parts])
    inside = coords[0::2].min() >= 0 and coords[1::2].min() >= 0 and coords[0::2].max() <= WIDTH \
        and coords[1::2].max() <= HEIGHT
    if not inside:
        assert geometry.area == decode_to_mask(parts, HEIGHT, WIDTH).sum()
        return
    assert geometry.area == pytest.approx(sum(polygon_geometry([p], HEIGHT, WIDTH).area for p in parts))
    part = parts[0]
    pixels = decode_to_mask([part], HEIGHT, WIDTH).sum()
    points = np.asarray(part).reshape(-1, 2)
    perimeter = np.linalg.norm(points - np.roll(points, 1, axis=0), axis=1).sum()
    assert abs(polygon_geometry([part], HEIGHT, WIDTH).area - pixels) <= perimeter + 2


@settings(max_examples=100, deadline=None)
@given(st.integers(0, WIDTH - 2), st.integers(0, HEIGHT - 2), st.integers(1, 40), st.integers(1, 40))
def test_pixel_aligned_polygon_box_equals_its_mask_box(x, y, w, h):
    w, h = min(w, WIDTH - x), min(h, HEIGHT - y)
    parts = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    geometry = polygon_geometry(parts, HEIGHT, WIDTH)
    assert geometry.bbox == tight_box(decode_to_mask(parts, HEIGHT, WIDTH)) == (x, y, w, h)
    assert geometry.area == w * h


@settings(max_examples=150, deadline=None)
@given(binary_masks(), st.booleans())
def test_rle_box_is_exact_tight_box(mask, compressed):
    rle = mask_to_rle(mask)
    from mlcore.data.masks import compressed_rle_runs

    assert sum(compressed_rle_runs(rle["counts"])) == HEIGHT * WIDTH
    if not compressed:  # the uncompressed form: run lengths in column-major order
        flat = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        bounds = np.concatenate([[0], changes, [flat.size]])
        counts = np.diff(bounds).tolist()
        if flat[0] == 1:
            counts = [0] + counts
        rle = {"size": [HEIGHT, WIDTH], "counts": counts}
    assert segmentation_kind(rle) == ("rle" if not compressed else "compressed_rle")
    geometry = rle_geometry(rle, HEIGHT, WIDTH)
    assert geometry.bbox == tight_box(mask)
    assert geometry.area == mask.sum()
    assert np.array_equal(decode_to_mask(rle, HEIGHT, WIDTH), mask)


def test_multi_part_polygon_box_covers_all_parts():
    parts = [[1, 1, 11, 1, 11, 11, 1, 11], [40, 30, 50, 30, 50, 45, 40, 45]]
    geometry = polygon_geometry(parts, HEIGHT, WIDTH)
    assert geometry.bbox == (1.0, 1.0, 49.0, 44.0)
    assert geometry.area == 100 + 150


def test_polygon_box_is_clipped_to_the_image():
    geometry = polygon_geometry([[-10, -5, 30, -5, 30, 20, -10, 20]], HEIGHT, WIDTH)
    assert geometry.bbox == (0.0, 0.0, 30.0, 20.0)


def test_invalid_polygon_parts_are_reported_and_dropped():
    kept, notes = clean_polygon_parts([[1, 1, 5, 5], [1, 2, 3], [0, 0, 4, 0, float("nan"), 4], [0, 0, 9, 0, 9, 9]])
    assert kept == [[0.0, 0.0, 9.0, 0.0, 9.0, 9.0]]
    assert [n.split(" ", 2)[1] for n in notes] == ["0", "1", "2"]
    assert "2 point(s)" in notes[0] and "odd number" in notes[1] and "NaN" in notes[2]


def test_segmentation_kinds():
    assert segmentation_kind([]) == "none"
    assert segmentation_kind(None) == "none"
    assert segmentation_kind([[0, 0, 1, 0, 1, 1]]) == "polygon"
    assert segmentation_kind([0, 0, 1, 0, 1, 1]) == "flat_polygon"
    assert segmentation_kind({"size": [2, 2], "counts": [4]}) == "rle"
    assert segmentation_kind({"size": [2, 2], "counts": "04"}) == "compressed_rle"
    assert segmentation_kind({"points": []}) == "unknown"


def test_garbage_compressed_rle_is_rejected():
    from mlcore.data.masks import SegmentationProblem

    for garbage in ("zzzz!!", "zzzz", "0", "3"):  # malformed, or runs not covering the 20 pixels exactly
        with pytest.raises(SegmentationProblem) as problem:
            rle_geometry({"size": [4, 5], "counts": garbage}, 4, 5)
        assert problem.value.code == "rle_invalid_counts"
    reference = mask_utils.encode(np.asfortranarray(np.ones((4, 5), dtype=np.uint8)))
    assert rle_geometry({"size": [4, 5], "counts": reference["counts"].decode()}, 4, 5).area == 20
