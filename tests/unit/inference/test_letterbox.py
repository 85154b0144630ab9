"""The engines' letterbox (numpy + cv2, into a reused array) gives the general preprocessor's numbers bit for bit,
and so ultralytics' LetterBox pixels; batches of different sizes and reused arrays change nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics.data.augment import LetterBox

from mlcore.inference import ONNXEngine, letterbox_images, letterbox_preprocessor
from mlcore.preprocess import YoloLetterbox, for_model
from mlcore.preprocess.yolo_letterbox import yolo_letterbox
from tests.unit.inference.conftest import IMGSZ, Exported
from tests.unit.inference.helpers import assert_identical, assert_same_detections

SIZES = [(480, 640), (417, 650), (1080, 1920), (37, 53), (1333, 799), (640, 640), (3, 900), (1, 1)]
CONF = 0.005


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_equals_the_general_preprocessor_bit_for_bit(height: int, width: int) -> None:
    image = noise(height, width, seed=height * width)
    reference, meta = letterbox_preprocessor(640)(image)
    pixels, metas = yolo_letterbox(640)([image])
    assert metas == [meta]
    assert pixels.dtype == np.float32 and np.array_equal(pixels[0], reference.numpy())


def test_equals_ultralytics_letterbox_pixel_for_pixel() -> None:
    image = noise(417, 650, seed=1)
    pixels, _ = yolo_letterbox(640)([image])
    bgr = LetterBox((640, 640), auto=False)(image=cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    expected = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
    assert torch.equal(torch.from_numpy(pixels[0]), expected)


def test_other_normalisations_and_array_layouts_match_too() -> None:
    config = {"yolo": {"strategy": "letterbox", "longest_edge": 320, "pad_to": [320, 320], "pad_value": 7,
                       "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7]}}
    general, fast = for_model("yolo", config), YoloLetterbox(for_model("yolo", config).config)
    rgba = np.dstack([noise(200, 300, seed=2), np.full((200, 300), 9, np.uint8)])
    for image in (rgba[:, :, :3], noise(300, 200, seed=3)[:, ::-1], noise(200, 300, seed=4)[::2, ::2]):
        reference, meta = general(image)
        pixels, metas = fast([image])
        assert metas == [meta] and np.array_equal(pixels[0], reference.numpy())


def test_a_reused_array_is_written_whole() -> None:
    letterbox = yolo_letterbox(64)
    canvas = np.full((3, 3, 64, 64), np.nan, dtype=np.float32)
    images = [noise(30, 64, seed=5), noise(64, 20, seed=6)]
    pixels, _ = letterbox(images, out=canvas)
    assert pixels.base is canvas or pixels.base is canvas.base  # a view, no copy
    assert pixels.shape == (2, 3, 64, 64) and not np.isnan(pixels).any()
    fresh, _ = letterbox(images)
    assert np.array_equal(pixels, fresh)
    letterbox(images[::-1], out=canvas)  # the other way round: every pixel rewritten
    assert np.array_equal(canvas[:2], letterbox(images[::-1])[0])
    with pytest.raises(ValueError, match="C-contiguous float32"):
        letterbox(images, out=np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="letterbox"):
        YoloLetterbox(for_model("sam").config)


def test_letterbox_images_keeps_its_contract(demo_images: list[Path]) -> None:
    batch = letterbox_images(demo_images, IMGSZ)
    reference = letterbox_preprocessor(IMGSZ)(list(demo_images))
    assert isinstance(batch.pixel_values, torch.Tensor) and torch.equal(batch.pixel_values, reference.pixel_values)
    assert batch.meta == reference.meta
    assert letterbox_images([], IMGSZ) is None


def test_a_batch_of_different_sizes_gives_what_each_image_gives_alone(exported: Exported,
                                                                      demo_images: list[Path]) -> None:
    rgbs = [cv2.resize(noise(8, 8, seed=index), size, interpolation=cv2.INTER_NEAREST) for index, size in
            enumerate([(160, 120), (50, 200), (96, 96), (300, 40)])]
    rgbs += [np.asarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)) for path in demo_images[:2]]
    for path in (exported.onnx, exported.onnx_dynamic):  # a fixed batch of 1 and a dynamic batch
        engine = ONNXEngine(path)
        together = engine.predict(rgbs, conf=CONF)
        alone = [engine.predict(rgb, conf=CONF)[0] for rgb in rgbs]
        assert [result.image_size for result in together] == [rgb.shape[:2] for rgb in rgbs]
        if engine.fixed_batch == 1:  # the same session calls: the same numbers
            assert_identical(together, alone)
        for got, want in zip(together, alone):  # a batched forward may round differently
            assert_same_detections(got, want)


def test_predict_reuses_its_input_array_without_leaking_it(detect_model: Exported, demo_images: list[Path]) -> None:
    engine = ONNXEngine(detect_model.onnx_dynamic)
    first = engine.predict(demo_images[:2], conf=CONF)
    canvas = engine._input_canvas(2)
    kept = [result.boxes.clone() for result in first]
    engine.predict(demo_images[2:4], conf=CONF)
    assert engine._input_canvas(2) is canvas  # the same array, not a new one per call
    assert all(torch.equal(result.boxes, boxes) for result, boxes in zip(first, kept))  # results are not views
    big = engine.predict(demo_images * 4, conf=CONF)  # past the reused size: a fresh array, same answers
    assert_identical(big[:len(demo_images)], engine.predict(demo_images, conf=CONF))


def test_threads_predicting_at_once_get_their_own_arrays(detect_model: Exported, demo_images: list[Path]) -> None:
    engine = ONNXEngine(detect_model.onnx)
    expected = [engine.predict(path, conf=CONF)[0] for path in demo_images]
    results: dict[int, list] = {}

    def work(worker: int) -> None:
        results[worker] = [engine.predict(path, conf=CONF)[0] for path in demo_images[worker % 2::1] * 3]

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, found in results.items():
        assert_identical(found, (expected[worker % 2:]) * 3)
