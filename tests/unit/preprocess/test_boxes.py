"""Boxes and points: into a model's frame where the pixels really went, and back to the original within half a pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.config.schemas.data import PreprocessingConfig
from mlcore.preprocess import PreprocessMeta, for_model
from tests.unit.preprocess.conftest import noise_image

# Every strategy, each with its default sizes and with a non-square or unusual variant.
CONFIGS = {
    "dino_keep_aspect_ratio": ("grounding_dino", None),
    "sam_resize_longest_side": ("sam", None),
    "yolo_letterbox": ("yolo", None),
    "keep_aspect_ratio_padded": ("grounding_dino", {"grounding_dino": {"shortest_edge": 300, "longest_edge": 500,
                                                                        "pad_to": [512, 520]}}),
    "resize_longest_side_unpadded": ("sam", {"sam": {"longest_edge": 333, "pad_to": None}}),
    "letterbox_non_square": ("yolo", {"yolo": {"pad_to": [320, 480]}}),
}
PREPROCESSORS = {key: for_model(name, config) for key, (name, config) in CONFIGS.items()}

sizes = st.integers(min_value=1, max_value=4000)


@st.composite
def image_and_boxes(draw: st.DrawFn) -> tuple[int, int, np.ndarray]:
    height, width = draw(sizes), draw(sizes)
    count = draw(st.integers(min_value=1, max_value=5))
    boxes = []
    for _ in range(count):
        xs = sorted(draw(st.floats(0, width)) for _ in range(2))
        ys = sorted(draw(st.floats(0, height)) for _ in range(2))
        boxes.append([xs[0], ys[0], xs[1], ys[1]])
    return height, width, np.array(boxes)


@pytest.mark.parametrize("key", CONFIGS)
@settings(max_examples=150, deadline=None)
@given(case=image_and_boxes())
def test_box_round_trip_is_within_half_a_pixel(key: str, case: tuple[int, int, np.ndarray]) -> None:
    height, width, boxes = case
    meta = PREPROCESSORS[key].plan(height, width)
    in_model = meta.boxes_to_model(boxes)
    assert np.abs(meta.boxes_from_model(in_model) - boxes).max() <= 0.5
    as_float32 = meta.boxes_from_model(meta.boxes_to_model(torch.tensor(boxes, dtype=torch.float32)))
    assert (as_float32 - torch.tensor(boxes, dtype=torch.float32)).abs().max() <= 0.5
    # Boxes inside the image land inside the resized image, never in the padding.
    left, top, _, _ = meta.pad
    (resized_h, resized_w), tolerance = meta.resized_size, 1e-6
    xs, ys = in_model[:, [0, 2]], in_model[:, [1, 3]]
    assert (xs >= left - tolerance).all() and (xs <= left + resized_w + tolerance).all()
    assert (ys >= top - tolerance).all() and (ys <= top + resized_h + tolerance).all()


@pytest.mark.parametrize("key", CONFIGS)
@settings(max_examples=150, deadline=None)
@given(height=sizes, width=sizes)
def test_the_whole_image_maps_exactly_onto_the_resized_pixels(key: str, height: int, width: int) -> None:
    meta = PREPROCESSORS[key].plan(height, width)
    left, top, right, bottom = meta.pad
    resized_h, resized_w = meta.resized_size
    assert meta.input_size == (resized_h + top + bottom, resized_w + left + right)
    whole = meta.boxes_to_model(np.array([0.0, 0.0, width, height]))
    assert np.allclose(whole, [left, top, left + resized_w, top + resized_h], atol=1e-9)


@pytest.mark.parametrize("key", CONFIGS)
def test_a_mapped_box_sits_on_the_rectangle_drawn_in_the_model_input(key: str) -> None:
    """Draw a white box in a black image, preprocess the pixels, find it in the tensor: it is where boxes_to_model says
    (within 1 model pixel; the resamplers blur edges, the half-intensity crossing stays on the edge)."""
    preprocessor = PREPROCESSORS[key]
    rng = np.random.default_rng(7)
    for height, width in [(480, 640), (917, 303), (37, 50), (1500, 1501)]:
        x0, x1 = sorted(rng.choice(np.arange(width // 8, width - width // 8), 2, replace=False))
        y0, y1 = sorted(rng.choice(np.arange(height // 8, height - height // 8), 2, replace=False))
        image = np.zeros((height, width, 3), np.uint8)
        image[y0:y1, x0:x1] = 255
        pixels, meta = preprocessor(image)
        expected = meta.boxes_to_model(np.array([x0, y0, x1, y1], dtype=float))
        if min(expected[2] - expected[0], expected[3] - expected[1]) < 4:
            continue  # too small to see after a strong downscale
        config = preprocessor.config
        half_white = (127.5 * config.rescale_factor - config.mean[0]) / config.std[0]
        white = (pixels[0] > half_white) & meta.pixel_mask().bool()
        ys, xs = torch.nonzero(white, as_tuple=True)
        found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
        assert np.abs(found - expected).max() <= 1.0, (height, width, found, expected)


def test_points_and_clipping() -> None:
    meta = PreprocessMeta.build(original_size=(100, 200), resized_size=(320, 640), pad=(0, 160, 0, 160))
    assert meta.scale == (3.2, 3.2)
    points = np.array([[10.0, 20.0], [200.0, 100.0]])
    assert np.allclose(meta.points_to_model(points), [[32.0, 224.0], [640.0, 480.0]])
    assert np.allclose(meta.points_from_model(meta.points_to_model(points)), points)
    # A prediction reaching into the padding is clamped to the image, unless asked not to.
    outside = np.array([[-16.0, 100.0, 700.0, 600.0]])
    assert np.allclose(meta.boxes_from_model(outside), [[0.0, 0.0, 200.0, 100.0]])
    assert np.allclose(meta.boxes_from_model(outside, clip=False), [[-5.0, -18.75, 218.75, 137.5]])


def test_normalized_cxcywh_is_relative_to_the_valid_region_and_round_trips() -> None:
    meta = PreprocessMeta.build(original_size=(100, 200), resized_size=(400, 800), pad=(0, 0, 200, 600))
    boxes = torch.tensor([[20.0, 10.0, 60.0, 50.0]])
    normalized = meta.boxes_to_normalized_cxcywh(boxes)
    # model frame: 80, 40, 240, 200 inside the 800 x 400 image (not the 1000 x 1000 canvas)
    assert torch.allclose(normalized, torch.tensor([[0.2, 0.3, 0.2, 0.4]]))
    assert torch.allclose(meta.boxes_from_normalized_cxcywh(normalized), boxes, atol=1e-5)


@pytest.mark.parametrize("canvas", [(480, 640), (1066, 1333), (2000, 700)])
def test_a_box_covering_the_whole_image_is_centred_unit_box_whatever_the_canvas(canvas) -> None:
    """The issue's example: a whole 480x640 image in a 1066x1333 canvas was (0.4, 0.375, 0.8, 0.75)."""
    meta = PreprocessMeta.build(original_size=(480, 640), resized_size=(480, 640), pad=(0, 0, 0, 0))
    padded = meta.padded_to((max(canvas[0], 480), max(canvas[1], 640)))
    whole = torch.tensor([[0.0, 0.0, 640.0, 480.0]])
    assert torch.allclose(padded.boxes_to_normalized_cxcywh(whole), torch.tensor([[0.5, 0.5, 1.0, 1.0]]))
    assert torch.allclose(padded.boxes_from_normalized_cxcywh(torch.tensor([[0.5, 0.5, 1.0, 1.0]])), whole)


def test_meta_survives_json() -> None:
    meta = for_model("yolo").plan(417, 650)
    assert PreprocessMeta.from_dict(meta.to_dict()) == meta


def test_plan_matches_the_tensor_the_preprocessor_makes() -> None:
    for name in ("grounding_dino", "sam", "yolo"):
        pixels, meta = for_model(name)(noise_image(123, 457))
        assert meta == for_model(name).plan(123, 457)
        assert tuple(pixels.shape) == (3, *meta.input_size)


def test_default_configs_are_the_schema_defaults() -> None:
    assert for_model("grounding_dino").config == PreprocessingConfig().grounding_dino
    assert for_model("grounding_dino").plan(480, 640).resized_size == (800, 1066)
    assert for_model("sam").plan(480, 640).input_size == (1024, 1024)
    assert for_model("yolo").plan(480, 640).pad == (0, 80, 0, 80)
