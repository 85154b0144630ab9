"""One model's preprocessor: inputs it accepts, batches of mixed sizes, sizes from the config, errors for people."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.config import load_config
from mlcore.config.schemas.data import PreprocessingConfig
from mlcore.errors import ConfigError, DatasetError
from mlcore.preprocess import for_model
from tests.unit.preprocess.conftest import noise_image

SIZES = [(480, 640), (300, 1000), (1200, 200)]


def test_a_batch_of_differently_sized_images_pads_bottom_right_and_keeps_each_image() -> None:
    images = [noise_image(h, w, seed=h) for h, w in SIZES]
    preprocessor = for_model("grounding_dino")
    batch = preprocessor(images)
    singles = [preprocessor(image) for image in images]
    height = max(single.meta.input_size[0] for single in singles)
    width = max(single.meta.input_size[1] for single in singles)
    assert tuple(batch.pixel_values.shape) == (3, 3, height, width)
    assert tuple(batch.pixel_mask.shape) == (3, height, width)
    for index, (single, meta) in enumerate(zip(singles, batch.meta)):
        rows, cols = single.meta.resized_size
        assert meta.original_size == single.meta.original_size and meta.resized_size == (rows, cols)
        assert meta.pad == (0, 0, width - cols, height - rows) and meta.input_size == (height, width)
        assert torch.equal(batch.pixel_values[index, :, :rows, :cols], single.pixel_values)
        padding = batch.pixel_values[index].clone()
        padding[:, :rows, :cols] = 0
        assert (padding == 0).all()  # DINO pads with zeros
        assert batch.pixel_mask[index].sum() == rows * cols
        # Boxes map into the batch frame the same way as for the image alone: padding is bottom-right.
        box = np.array([5.0, 6.0, 50.0, 60.0])
        assert np.allclose(meta.boxes_to_model(box), single.meta.boxes_to_model(box))


def test_a_letterboxed_batch_needs_no_extra_padding() -> None:
    batch = for_model("yolo")([noise_image(h, w) for h, w in SIZES])
    assert tuple(batch.pixel_values.shape) == (3, 3, 640, 640)
    assert [meta.input_size for meta in batch.meta] == [(640, 640)] * 3
    assert batch.meta[1].pad == (0, 224, 0, 224)  # 300 x 1000 -> 192 x 640
    assert batch.meta[2].pad == (266, 0, 267, 0)  # 1200 x 200 -> 640 x 107: the odd pixel goes right


def test_config_values_change_the_sizes(tmp_path: Path) -> None:
    path = tmp_path / "preprocessing.yaml"
    path.write_text("kind: preprocessing\n"
                    "yolo:\n  pad_to: [320, 320]\n  longest_edge: 320\n"
                    "grounding_dino:\n  shortest_edge: 400\n  longest_edge: 666\n"
                    "sam:\n  longest_edge: 512\n  pad_to: [512, 512]\n")
    config = load_config(path)
    image = noise_image(480, 640)
    yolo = for_model("yolo", config)(image)
    assert tuple(yolo.pixel_values.shape) == (3, 320, 320) and yolo.meta.resized_size == (240, 320)
    assert yolo.meta.pad == (0, 40, 0, 40)
    assert for_model("grounding_dino", config)(image).meta.resized_size == (400, 533)
    sam = for_model("sam", config)(image)
    assert tuple(sam.pixel_values.shape) == (3, 512, 512) and sam.meta.resized_size == (384, 512)


def test_normalisation_and_padding_values_follow_the_config() -> None:
    image = np.full((100, 200, 3), 200, dtype=np.uint8)
    yolo = for_model("yolo")(image)
    assert torch.allclose(yolo.pixel_values[:, 320, 320], torch.full((3,), 200 / 255))
    assert torch.allclose(yolo.pixel_values[:, 0, 0], torch.full((3,), 114 / 255))  # ultralytics' grey
    sam = for_model("sam")(image)
    expected = (200 - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    assert torch.allclose(sam.pixel_values[:, 0, 0], expected)
    assert (sam.pixel_values[:, -1, -1] == 0).all()  # zero padding, as SamImageProcessor pads
    grey = for_model("sam", {"sam": {"pad_value": 255, "rescale_factor": 1 / 255, "mean": [0, 0, 0],
                                     "std": [1, 1, 1]}})(image)
    assert torch.allclose(grey.pixel_values[:, -1, -1], torch.ones(3))


def test_arrays_pil_images_and_paths_give_the_same_tensor(tmp_path: Path) -> None:
    image = noise_image(90, 120)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    preprocessor = for_model("sam")
    from_array = preprocessor(image).pixel_values
    assert torch.equal(preprocessor(Image.fromarray(image)).pixel_values, from_array)
    assert torch.equal(preprocessor(path).pixel_values, from_array)
    assert torch.equal(preprocessor(str(path)).pixel_values, from_array)
    rgba = np.concatenate([image, np.full((90, 120, 1), 7, np.uint8)], axis=2)
    assert torch.equal(preprocessor(rgba).pixel_values, from_array)
    gray, meta = preprocessor(image[:, :, 0])  # repeated to 3 channels: equal once un-normalised
    assert torch.equal(gray[0], from_array[0])
    rows, cols = meta.resized_size
    assert torch.allclose(gray[1, :rows, :cols] * 57.12 + 116.28, gray[0, :rows, :cols] * 58.395 + 123.675, atol=1e-3)


def test_an_unreadable_image_is_a_dataset_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg") as caught:
        for_model("yolo")(broken)
    assert caught.value.where == str(broken)
    missing = tmp_path / "missing.png"
    with pytest.raises(DatasetError, match="missing.png"):
        for_model("yolo")([noise_image(10, 10), missing])


def test_an_unknown_format_under_ultralytics_pil_patch_is_still_a_dataset_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing ultralytics makes Image.open retry unknown files with pi-heif, which raises ImportError when absent."""
    def patched_open(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", patched_open)
    strange = tmp_path / "strange.heic"
    strange.write_bytes(b"????")
    with pytest.raises(DatasetError, match="strange.heic"):
        for_model("sam")(strange)


def test_bad_configs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pad_to"):
        for_model("sam", {"sam": {"pad_to": [512, 512]}})  # 1024-long images cannot fit
    with pytest.raises(ConfigError, match="shortest_edge"):
        for_model("grounding_dino", {"grounding_dino": {"shortest_edge": 2000}})  # above longest_edge
    with pytest.raises(ConfigError, match="no preprocessing for model"):
        for_model("owlvit")
    path = tmp_path / "bad.yaml"
    path.write_text("kind: preprocessing\nyolo:\n  strategy: stretch\n")
    with pytest.raises(ConfigError, match="yolo.strategy"):
        load_config(path, PreprocessingConfig)


def test_non_image_inputs_are_rejected() -> None:
    with pytest.raises(TypeError, match="uint8"):
        for_model("yolo")(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        for_model("yolo")([])
