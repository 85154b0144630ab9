"""Masks: into a model's frame (nearest) and back (bilinear + threshold), with the error the resampling allows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers import SamImageProcessor

from mlcore.preprocess import PreprocessMeta, for_model

PREPROCESSORS = {name: for_model(name) for name in ("grounding_dino", "sam", "yolo")}


@st.composite
def image_and_rectangle(draw: st.DrawFn) -> tuple[int, int, tuple[int, int, int, int]]:
    height = draw(st.integers(min_value=1, max_value=2500))
    width = draw(st.integers(min_value=1, max_value=2500))
    x0 = draw(st.integers(0, width - 1))
    x1 = draw(st.integers(x0 + 1, width))
    y0 = draw(st.integers(0, height - 1))
    y1 = draw(st.integers(y0 + 1, height))
    return height, width, (x0, y0, x1, y1)


@pytest.mark.parametrize("name", PREPROCESSORS)
@settings(max_examples=80, deadline=None)
@given(case=image_and_rectangle())
def test_a_rectangle_mask_survives_the_round_trip(name: str, case: tuple[int, int, tuple[int, int, int, int]]) -> None:
    """For a rectangle at least 20 model pixels on each side: IoU >= 0.9, and each edge of the returned mask's tight box
    is within 0.5 / scale + 0.5 original pixels of the original edge (half a model pixel from the nearest resize in,
    half an original pixel from thresholding the bilinear resize out)."""
    height, width, (x0, y0, x1, y1) = case
    meta = PREPROCESSORS[name].plan(height, width)
    scale_x, scale_y = meta.scale
    assume((x1 - x0) * scale_x >= 20 and (y1 - y0) * scale_y >= 20)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True

    in_model = meta.masks_to_model(mask)
    assert in_model.shape == meta.input_size and in_model.dtype == np.bool_
    back = meta.masks_from_model(in_model)
    assert back.shape == (height, width) and back.dtype == np.bool_

    ys, xs = np.nonzero(back)
    assert len(xs), "the mask vanished"
    assert (back & mask).sum() / (back | mask).sum() >= 0.9
    x_tolerance, y_tolerance = 0.5 / scale_x + 0.5 + 1e-6, 0.5 / scale_y + 0.5 + 1e-6
    assert abs(xs.min() - x0) <= x_tolerance and abs(xs.max() + 1 - x1) <= x_tolerance
    assert abs(ys.min() - y0) <= y_tolerance and abs(ys.max() + 1 - y1) <= y_tolerance


def test_without_a_resize_the_mask_round_trip_is_exact() -> None:
    """Scale 1 (a 1024-wide image for SAM, a 640x480 one for YOLO): padding is added and cropped, nothing resampled."""
    rng = np.random.default_rng(3)
    for name, (height, width) in [("sam", (700, 1024)), ("yolo", (480, 640))]:
        meta = PREPROCESSORS[name].plan(height, width)
        assert meta.scale == (1.0, 1.0) and meta.pad != (0, 0, 0, 0)
        masks = rng.random((3, height, width)) > 0.5  # noise: every pixel is an edge
        assert np.array_equal(meta.masks_from_model(meta.masks_to_model(masks)), masks)


def test_masks_keep_their_array_type_and_leading_dimensions() -> None:
    meta = PREPROCESSORS["grounding_dino"].plan(60, 90)
    as_tensor = torch.zeros((2, 3, 60, 90), dtype=torch.uint8)
    as_tensor[..., 10:30, 20:50] = 1
    in_model = meta.masks_to_model(as_tensor)
    assert isinstance(in_model, torch.Tensor) and in_model.dtype == torch.uint8
    assert tuple(in_model.shape) == (2, 3, *meta.input_size)
    assert in_model.sum() > 0 and set(in_model.unique().tolist()) == {0, 1}
    assert tuple(meta.masks_from_model(in_model).shape) == (2, 3, 60, 90)
    probabilities = meta.masks_from_model(in_model.float(), binarize=False)
    assert probabilities.dtype == torch.float32 and float(probabilities.max()) == pytest.approx(1.0)
    empty = meta.masks_to_model(np.zeros((0, 60, 90), dtype=bool))
    assert empty.shape == (0, *meta.input_size)
    with pytest.raises(ValueError, match="the image is"):
        meta.masks_to_model(np.zeros((60, 91), dtype=bool))


def test_padding_of_a_mask_is_empty_and_content_sits_in_the_resized_region() -> None:
    meta = PREPROCESSORS["yolo"].plan(300, 600)  # letterbox: 320 x 640 inside 640 x 640, 160 rows above and below
    full = meta.masks_to_model(np.ones((300, 600), dtype=bool))
    assert np.array_equal(full, meta.pixel_mask().numpy().astype(bool))
    assert full[:160].sum() == 0 and full[-160:].sum() == 0 and full[160:480].all()


def test_low_resolution_logits_match_sams_own_post_processing() -> None:
    """SAM predicts 256 x 256 logits over the padded 1024 frame; mapping them back equals SamImageProcessor's
    post_process_masks (upsample to the input, crop, resize to the original, threshold at 0)."""
    meta = PREPROCESSORS["sam"].plan(375, 500)
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(1, 3, 256, 256)).astype(np.float32))
    logits = F.avg_pool2d(logits, 3, stride=1, padding=1)  # smooth, like real logits
    reference = SamImageProcessor().post_process_masks([logits], [meta.original_size], [meta.resized_size])[0]
    ours = meta.masks_from_model(logits, threshold=0.0)
    assert ours.shape == reference.shape == (1, 3, 375, 500)
    assert torch.equal(ours, reference)


def test_low_resolution_mask_of_a_rectangle_maps_back_onto_it() -> None:
    meta = PREPROCESSORS["sam"].plan(600, 900)
    mask = np.zeros((600, 900), dtype=bool)
    mask[100:400, 300:800] = True
    full = torch.from_numpy(meta.masks_to_model(mask)).float()[None, None]
    low_res = F.avg_pool2d(full, 4)  # 256 x 256 probabilities
    back = meta.masks_from_model(low_res.numpy())[0, 0]
    assert (back & mask).sum() / (back | mask).sum() >= 0.98


def test_pixel_mask_marks_image_pixels() -> None:
    meta = PreprocessMeta.build(original_size=(10, 20), resized_size=(8, 16), pad=(2, 3, 4, 5))
    pixel_mask = meta.pixel_mask()
    assert pixel_mask.dtype == torch.int64 and tuple(pixel_mask.shape) == (16, 22)
    assert pixel_mask.sum() == 8 * 16 and pixel_mask[3:11, 2:18].all()
