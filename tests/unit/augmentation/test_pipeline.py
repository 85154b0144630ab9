"""Boxes, labels and masks stay together through any pipeline the table can produce (hypothesis properties)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcore.augmentation import AUGMENTATIONS, get_pipeline
from mlcore.augmentation.pipeline import AugmentationPipeline
from mlcore.augmentation.rules import CHARACTERISTIC_RULES, ENVIRONMENT_RULES
from mlcore.augmentation.translator import PipelineInfo, PlannedTransform
from mlcore.data.masks import tight_box

MODES = ("detection_only", "segmentation_only", "detection_and_segmentation")
MASK_MODES = MODES[1:]
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

descriptions = st.fixed_dictionaries({
    "characteristics": st.lists(st.sampled_from(list(CHARACTERISTIC_RULES)), unique=True),
    "environment": st.fixed_dictionaries({k: st.sampled_from(list(v)) for k, v in ENVIRONMENT_RULES.items()}),
    "intensity": st.sampled_from(["low", "medium", "high"]),
    "seed": st.integers(0, 2**31 - 1),
})


@st.composite
def scenes(draw, max_objects: int = 6):
    """A random image with random shapes (rectangles, ellipses, polygons), some reaching past the border."""
    height, width = draw(st.integers(24, 160)), draw(st.integers(24, 160))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = []
    for _ in range(draw(st.integers(0, max_objects))):
        mask = np.zeros((height, width), np.uint8)
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        rx, ry = rng.uniform(1, width / 2), rng.uniform(1, height / 2)
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(mask, (int(cx - rx), int(cy - ry)), (int(cx + rx), int(cy + ry)), 1, -1)
        elif kind == 1:
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(mask, [points], 1)
        if mask.any():
            masks.append(mask)
    masks = np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
    boxes = np.array([tight_box(m) for m in masks], dtype=np.float32).reshape(-1, 4)
    labels = np.arange(len(masks)) + 100  # distinct, so alignment is checkable
    return image, boxes, labels, masks


def assert_consistent(out, image_shape, labels, mode):
    height, width = out.image.shape[:2]
    assert out.image.shape == image_shape and out.image.dtype == np.uint8
    n = len(out.boxes)
    assert out.boxes.shape == (n, 4) and len(out.labels) == n and len(out.kept) == n
    assert len(set(out.kept.tolist())) == n  # no object duplicated
    np.testing.assert_array_equal(out.labels, labels[out.kept])
    x, y, w, h = out.boxes.T if n else (np.zeros(0),) * 4
    eps = 1e-3
    assert np.all(x >= -eps) and np.all(y >= -eps), out.boxes
    assert np.all(x + w <= width + eps) and np.all(y + h <= height + eps), out.boxes
    assert np.all(w > 0) and np.all(h > 0), out.boxes
    if mode in MASK_MODES:
        assert out.masks is not None and out.masks.shape == (n, height, width)
        for box, mask in zip(out.boxes, out.masks):
            tight = tight_box(mask)
            assert tight is not None, "a surviving object must keep some mask"
            np.testing.assert_allclose(box, tight, atol=1.0)
    else:
        assert out.masks is None


@PROPERTY
@given(description=descriptions, scene=scenes(), mode=st.sampled_from(MODES))
def test_boxes_stay_in_the_image_and_agree_with_their_masks(description, scene, mode):
    image, boxes, labels, masks = scene
    pipeline = get_pipeline(description["characteristics"], description["environment"], description["intensity"],
                            mode, seed=description["seed"])
    for _ in range(2):
        out = pipeline(image, boxes, labels, masks)
        assert_consistent(out, image.shape, labels, mode)


@PROPERTY
@given(description=descriptions, scene=scenes())
def test_same_seed_gives_the_same_output(description, scene):
    image, boxes, labels, masks = scene
    args = (description["characteristics"], description["environment"], description["intensity"],
            "detection_and_segmentation")
    first, second = (get_pipeline(*args, seed=description["seed"]) for _ in range(2))
    for _ in range(2):  # call after call, not only the first
        a, b = first(image, boxes, labels, masks), second(image, boxes, labels, masks)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.kept, b.kept)
        np.testing.assert_array_equal(a.masks, b.masks)


SPATIAL_ONLY = st.fixed_dictionaries({
    "characteristics": st.lists(st.sampled_from(["changes_shape", "changes_size", "multiple_objects"]), unique=True),
    "environment": st.fixed_dictionaries({"lighting": st.just("stable"), "background": st.just("clean"),
                                          "camera": st.sampled_from(["fixed", "moving"]),
                                          "distance": st.sampled_from(["fixed", "variable", "close"])}),
    "intensity": st.sampled_from(["low", "medium", "high"]),
    "seed": st.integers(0, 2**31 - 1),
})
COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]], np.uint8)


@PROPERTY
@given(description=SPATIAL_ONLY, cells=st.lists(st.booleans(), min_size=6, max_size=6))
def test_each_mask_still_covers_its_own_object(description, cells):
    """Objects painted in distinct colours: after geometry, the pixels under mask j have object kept[j]'s colour."""
    height, width, cell = 120, 180, 60
    image = np.zeros((height, width, 3), np.uint8)
    masks = []
    for index, present in enumerate(cells):
        if present:
            row, col = divmod(index, 3)
            mask = np.zeros((height, width), np.uint8)
            mask[row * cell + 10:row * cell + 50, col * cell + 10:col * cell + 50] = 1
            image[mask.astype(bool)] = COLORS[index]
            masks.append((index, mask))
    labels = np.array([index for index, _ in masks])
    stacked = np.stack([m for _, m in masks]) if masks else np.zeros((0, height, width), np.uint8)
    boxes = [tight_box(m) for _, m in masks]
    pipeline = get_pipeline(description["characteristics"], description["environment"], description["intensity"],
                            "detection_and_segmentation", seed=description["seed"])
    out = pipeline(image, boxes, labels, stacked)
    assert_consistent(out, image.shape, labels, "detection_and_segmentation")
    for label, mask in zip(out.labels, out.masks):
        under = out.image[mask.astype(bool)]
        matches = np.all(np.abs(under.astype(int) - COLORS[label]) <= 40, axis=1).mean()
        assert matches > 0.5, (label, matches)


def _fixed(transforms: list[PlannedTransform], mode: str) -> AugmentationPipeline:
    return AugmentationPipeline(PipelineInfo([], {}, "medium", mode, transforms), seed=0)


@pytest.mark.parametrize("mode", MODES)
def test_objects_pushed_out_of_the_frame_are_dropped_with_their_masks_and_labels(mode):
    height, width = 100, 200
    image = np.zeros((height, width, 3), np.uint8)
    masks = np.zeros((3, height, width), np.uint8)
    masks[0, 10:30, 10:40] = 1  # left: survives, shifted right by half the width
    masks[1, 50:80, 150:190] = 1  # right: pushed out
    masks[2, 40:60, 60:90] = 1  # left: survives
    boxes = np.array([tight_box(m) for m in masks])
    shift = PlannedTransform("Affine", {"translate_percent": {"x": (0.5, 0.5), "y": (0.0, 0.0)}}, 1.0)
    out = _fixed([shift], mode)(image, boxes, np.array([7, 8, 9]), masks)
    assert out.kept.tolist() == [0, 2] and out.labels.tolist() == [7, 9]
    np.testing.assert_allclose(out.boxes, [[110, 10, 30, 20], [160, 40, 30, 20]], atol=1.0)
    if mode in MASK_MODES:
        assert out.masks[0][10:30, 110:140].all() and out.masks[1][40:60, 160:190].all()
        assert out.masks.sum() == masks[[0, 2]].sum()


def test_flip_moves_box_and_mask_identically_and_colour_leaves_masks_alone():
    height, width = 50, 80
    image = np.full((height, width, 3), 100, np.uint8)
    mask = np.zeros((1, height, width), np.uint8)
    mask[0, 5:15, 10:30] = 1
    transforms = [PlannedTransform("HorizontalFlip", {}, 1.0),
                  PlannedTransform("RandomBrightnessContrast", {"brightness_limit": (0.5, 0.5)}, 1.0)]
    out = _fixed(transforms, "detection_and_segmentation")(image, [[10, 5, 20, 10]], [1], mask)
    np.testing.assert_array_equal(out.boxes, [[50, 5, 20, 10]])
    np.testing.assert_array_equal(out.masks[0], mask[0, :, ::-1])
    assert out.masks.max() == 1 and out.image.mean() > 100


def test_detection_only_ignores_masks_and_objects_without_masks_keep_their_box():
    image = np.zeros((40, 40, 3), np.uint8)
    masks = np.zeros((2, 40, 40), np.uint8)
    masks[0, 5:10, 5:10] = 1  # the second object has no mask (a box-only annotation in a mixed dataset)
    boxes = [[5, 5, 5, 5], [20, 20, 10, 8]]
    flip = [PlannedTransform("HorizontalFlip", {}, 1.0)]
    det = _fixed(flip, "detection_only")(image, boxes, [1, 2], masks)
    assert det.masks is None and det.kept.tolist() == [0, 1]
    seg = _fixed(flip, "detection_and_segmentation")(image, boxes, [1, 2], masks)
    np.testing.assert_allclose(seg.boxes, [[30, 5, 5, 5], [10, 20, 10, 8]])
    assert seg.masks[1].sum() == 0


def test_no_objects_and_mismatched_inputs():
    pipeline = get_pipeline(["partially_hidden"], {"camera": "moving"}, seed=1)
    out = pipeline(np.zeros((30, 30, 3), np.uint8), np.zeros((0, 4)), [], np.zeros((0, 30, 30), np.uint8))
    assert out.boxes.shape == (0, 4) and out.masks.shape == (0, 30, 30)
    with pytest.raises(ValueError, match="labels"):
        pipeline(np.zeros((30, 30, 3), np.uint8), [[1, 1, 5, 5]], [])


def test_pipeline_from_the_shipped_config_template():
    from mlcore.config import load_config, templates_dir

    config = load_config(templates_dir() / "augmentation.template.yaml")
    config = config.model_copy(update={"characteristics": ["low_contrast"], "seed": 3})
    pipeline = AUGMENTATIONS.from_config(config, mode="detection_only")
    assert pipeline.seed == 3 and "CLAHE" in {t.name for t in pipeline.info.transforms}
    assert pipeline.info.environment == config.environment.model_dump()


@settings(max_examples=80, deadline=None)
@given(scene=scenes(max_objects=3), flip=st.booleans(), as_bool=st.booleans(),
       near=st.lists(st.floats(-20, 200), min_size=4, max_size=4))
def test_fast_mask_box_is_the_tight_box(scene, flip, as_bool, near):
    """Whatever the hint region (right, too small, elsewhere), the box is the mask's tight box."""
    from mlcore.augmentation.pipeline import mask_box

    masks = scene[3]
    masks = np.concatenate([masks, np.zeros((1, *masks.shape[1:]), np.uint8)])  # and an empty one
    for mask in masks:
        mask = mask[:, ::-1] if flip else mask  # non-contiguous views too
        mask = mask.astype(bool) if as_bool else mask
        expected = tight_box(mask)
        assert mask_box(mask) == expected
        assert mask_box(mask, near=np.array(near)) == expected
        if expected is not None:
            assert mask_box(mask, near=np.array(expected)) == expected


def test_objects_given_without_a_box_get_their_masks_box():
    """segmentation_only data: annotations may carry no bbox ([0, 0, 0, 0] from the reader)."""
    masks = np.zeros((2, 40, 60), np.uint8)
    masks[0, 5:15, 10:30] = 1
    masks[1, 20:35, 40:55] = 1
    out = _fixed([PlannedTransform("HorizontalFlip", {}, 1.0)], "segmentation_only")(
        np.zeros((40, 60, 3), np.uint8), np.zeros((2, 4)), [1, 2], masks)
    assert out.kept.tolist() == [0, 1]
    np.testing.assert_array_equal(out.boxes, [[30, 5, 20, 10], [5, 20, 15, 15]])
