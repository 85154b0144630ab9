"""Each model sees what its own reference pipeline would feed it: ultralytics' LetterBox, transformers' processors.

Measured differences: YOLO pixel-for-pixel equal to LetterBox; Grounding DINO max abs difference 0 (pixel_values)
and an identical pixel_mask; SAM max abs difference 2.4e-7 (SAM's 0-255 mean/std in the config vs 0.485 * 255 in
float32). The asserted tolerance, 1e-5, leaves room for float rounding only, not for a different resampler.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GroundingDinoImageProcessor, SamImageProcessor
from transformers.image_transforms import get_size_with_aspect_ratio
from ultralytics.data.augment import LetterBox

from mlcore.preprocess import for_model
from mlcore.preprocess.resize import keep_aspect_ratio_size, letterbox_placement, longest_side_size
from tests.unit.preprocess.conftest import noise_image

TOLERANCE = 1e-5
ODD_SIZES = [(480, 640), (417, 650), (1080, 1920), (37, 53), (1333, 799), (640, 640), (3, 900)]
sizes = st.integers(min_value=1, max_value=4000)


def ultralytics_letterbox(rgb: np.ndarray, new_shape: tuple[int, int]) -> np.ndarray:
    """LetterBox as ultralytics' predictor runs it: on the BGR image cv2 reads, then back to RGB."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(LetterBox(new_shape, auto=False)(image=bgr), cv2.COLOR_BGR2RGB)


def as_uint8_image(pixel_values: torch.Tensor) -> np.ndarray:
    """Our YOLO tensor (RGB / 255) back to uint8 HWC; exact, since every value is k / 255."""
    return (pixel_values * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# -- YOLO ----------------------------------------------------------------------------------------------------------

def test_letterbox_equals_ultralytics_on_a_real_photo(photo: np.ndarray) -> None:
    pixels, meta = for_model("yolo")(photo)
    assert np.array_equal(as_uint8_image(pixels), ultralytics_letterbox(photo, (640, 640)))
    assert torch.equal(pixels, torch.from_numpy(ultralytics_letterbox(photo, (640, 640))).permute(2, 0, 1) / 255)


def test_letterbox_from_a_jpeg_path_equals_ultralytics_reading_it_with_cv2(photo_path: Path) -> None:
    """End to end as the student's predictor runs: ultralytics decodes with cv2.imread, we decode with PIL."""
    pixels, _ = for_model("yolo")(photo_path)
    reference = LetterBox((640, 640), auto=False)(image=cv2.imread(str(photo_path)))
    assert np.abs(as_uint8_image(pixels).astype(int) - reference[..., ::-1].astype(int)).max() <= 1


@pytest.mark.parametrize(("height", "width"), ODD_SIZES)
def test_letterbox_equals_ultralytics_pixel_for_pixel(height: int, width: int) -> None:
    image = noise_image(height, width, seed=height + width)
    pixels, meta = for_model("yolo")(image)
    assert pixels.shape == (3, 640, 640)
    assert np.array_equal(as_uint8_image(pixels), ultralytics_letterbox(image, (640, 640)))


def test_letterbox_to_a_non_square_canvas_equals_ultralytics() -> None:
    image = noise_image(417, 650, seed=1)
    pixels, _ = for_model("yolo", {"yolo": {"pad_to": [320, 480]}})(image)
    assert np.array_equal(as_uint8_image(pixels), ultralytics_letterbox(image, (320, 480)))


@settings(max_examples=300, deadline=None)
@given(height=sizes, width=sizes, canvas=st.sampled_from([(640, 640), (320, 480), (480, 320), (1280, 1280)]))
def test_letterbox_geometry_equals_ultralytics(height: int, width: int, canvas: tuple[int, int]) -> None:
    shape_only = np.broadcast_to(np.zeros(1, np.uint8), (height, width, 3))  # get_params reads only the shape
    reference = LetterBox(canvas, auto=False).get_params({"img": shape_only})
    ours = letterbox_placement(height, width, canvas, longest_edge=max(canvas))
    assert ours.resized_size == reference["new_unpad"][::-1]
    assert ours.pad == (reference["left"], reference["top"], reference["right"], reference["bottom"])


# -- Grounding DINO ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dino_processor() -> GroundingDinoImageProcessor:
    return GroundingDinoImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})


def test_dino_matches_transformers_on_a_real_photo(photo: np.ndarray, dino_processor) -> None:
    reference = dino_processor(images=photo, return_tensors="pt")
    output = for_model("grounding_dino")(photo)
    assert output.pixel_values.shape == reference["pixel_values"][0].shape
    assert (output.pixel_values - reference["pixel_values"][0]).abs().max() < TOLERANCE
    assert torch.equal(output.pixel_mask, reference["pixel_mask"][0])


def test_dino_batch_matches_transformers_padding_and_pixel_mask(dino_processor) -> None:
    images = [noise_image(h, w, seed=h) for h, w in [(480, 640), (417, 650), (1333, 799), (37, 53), (3, 900)]]
    reference = dino_processor(images=images, return_tensors="pt", input_data_format="channels_last")
    output = for_model("grounding_dino")(images)
    assert output.pixel_values.shape == reference["pixel_values"].shape
    assert (output.pixel_values - reference["pixel_values"]).abs().max() < TOLERANCE
    assert torch.equal(output.pixel_mask, reference["pixel_mask"])


def test_dino_label_boxes_match_transformers_normalisation_over_each_images_own_size(dino_processor) -> None:
    """Grounding DINO's boxes are relative to the valid (unpadded) image: transformers' processor agrees for an image it
    does not pad (its labels of a padded batch are over the canvas, the frame DETR's authors call wrong for padded
    images, facebookresearch/detr#286). mlcore's labels must not depend on the batch canvas."""
    images = [noise_image(300, 500), noise_image(500, 300)]
    xywh = [[[10.0, 20.0, 100.0, 50.0], [0.0, 0.0, 500.0, 300.0]], [[50.0, 60.0, 30.0, 200.0]]]
    annotations = [{"image_id": index, "annotations": [{"bbox": box, "category_id": 0, "area": box[2] * box[3],
                                                        "iscrowd": 0} for box in boxes]}
                   for index, boxes in enumerate(xywh)]
    # One image per call: transformers does not pad, so its labels are over the image's own (resized) size.
    reference = [dino_processor(images=[image], annotations=[annotation], return_tensors="pt")["labels"][0]
                 for image, annotation in zip(images, annotations)]
    _, metas = for_model("grounding_dino")(images)
    for meta, boxes, labels in zip(metas, xywh, reference):
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes])
        ours = meta.boxes_to_normalized_cxcywh(xyxy)
        assert np.abs(ours - labels["boxes"].numpy()).max() < TOLERANCE
        assert np.abs(meta.boxes_from_normalized_cxcywh(ours) - xyxy).max() < 1e-3
        assert np.abs(meta.padded_to((2000, 2000)).boxes_to_normalized_cxcywh(xyxy) - ours).max() < 1e-9


@settings(max_examples=500, deadline=None)
@given(height=sizes, width=sizes)
def test_keep_aspect_ratio_size_equals_transformers(height: int, width: int) -> None:
    """Equal wherever transformers' rule keeps its own contract (sides >= 1, long side within longest_edge)."""
    reference = get_size_with_aspect_ratio((height, width), 800, 1333)
    ours = keep_aspect_ratio_size(height, width, 800, 1333)
    if min(reference) >= 1 and max(reference) <= 1333:
        assert ours == reference
    assert min(ours) >= 1 and max(ours) <= 1333


# -- SAM -----------------------------------------------------------------------------------------------------------

def test_sam_matches_transformers_on_a_real_photo(photo: np.ndarray) -> None:
    reference = SamImageProcessor()(images=photo, return_tensors="pt")
    pixels, meta = for_model("sam")(photo)
    assert (pixels - reference["pixel_values"][0]).abs().max() < TOLERANCE
    assert list(meta.resized_size) == reference["reshaped_input_sizes"][0].tolist()


def test_sam_batch_matches_transformers() -> None:
    images = [noise_image(h, w, seed=w) for h, w in ODD_SIZES]
    reference = SamImageProcessor()(images=images, return_tensors="pt", input_data_format="channels_last")
    pixels, metas = for_model("sam")(images)
    assert pixels.shape == reference["pixel_values"].shape == (len(images), 3, 1024, 1024)
    assert (pixels - reference["pixel_values"]).abs().max() < TOLERANCE
    assert [list(meta.resized_size) for meta in metas] == reference["reshaped_input_sizes"].tolist()


@settings(max_examples=500, deadline=None)
@given(height=sizes, width=sizes)
def test_longest_side_size_equals_transformers(height: int, width: int) -> None:
    reference = SamImageProcessor()._get_preprocess_shape((height, width), 1024)
    ours = longest_side_size(height, width, 1024)
    if min(reference) >= 1:
        assert ours == reference
    assert min(ours) >= 1 and max(ours) == 1024
