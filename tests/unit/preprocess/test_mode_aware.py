"""The mode decides the models: its recommended teachers plus the YOLO student, each fed its own tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlcore.data.mode_config import ModeConfig
from mlcore.errors import ConfigError
from mlcore.preprocess import ModeAwarePreprocessor, PreprocessMeta, for_model
from tests.unit.preprocess.conftest import noise_image

EXPECTED_MODELS = {
    "detection_only": ("grounding_dino", "yolo"),
    "segmentation_only": ("sam", "yolo"),
    "detection_and_segmentation": ("grounding_dino", "sam", "yolo"),
}
@pytest.fixture
def mode_configs(mode_config_paths: dict[str, Path]) -> dict[str, Path]:
    return mode_config_paths


@pytest.mark.parametrize("mode", EXPECTED_MODELS)
def test_each_mode_runs_exactly_its_models(mode: str, mode_configs: dict[str, Path]) -> None:
    preprocessor = ModeAwarePreprocessor.from_mode_config(ModeConfig.read(mode_configs[mode]))
    assert preprocessor.models == EXPECTED_MODELS[mode]
    image = noise_image(240, 320)
    outputs = preprocessor(image)
    assert tuple(outputs) == EXPECTED_MODELS[mode]
    for name, (pixel_values, meta) in outputs.items():
        expected_values, expected_meta = for_model(name)(image)
        assert isinstance(meta, PreprocessMeta) and meta == expected_meta
        assert torch.equal(pixel_values, expected_values)


def test_a_batch_gives_each_model_a_stacked_tensor_and_one_meta_per_image(mode_configs: dict[str, Path]) -> None:
    preprocessor = ModeAwarePreprocessor.from_mode_config(mode_configs["detection_and_segmentation"])
    images = [noise_image(240, 320), noise_image(500, 200)]
    outputs = preprocessor(images)
    assert tuple(outputs["grounding_dino"].pixel_values.shape) == (2, 3, 1333, 1066)  # 800 x 1066 and 1333 x 533
    assert tuple(outputs["sam"].pixel_values.shape) == (2, 3, 1024, 1024)
    assert tuple(outputs["yolo"].pixel_values.shape) == (2, 3, 640, 640)
    for _, metas in outputs.values():
        assert [meta.original_size for meta in metas] == [(240, 320), (500, 200)]
    assert preprocessor.plan(500, 200) == {name: for_model(name).plan(500, 200) for name in preprocessor.models}


def test_the_preprocessing_config_sets_every_models_sizes(mode_configs: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "preprocessing.yaml"
    config.write_text("kind: preprocessing\nyolo:\n  pad_to: [320, 320]\nsam:\n  longest_edge: 256\n"
                      "  pad_to: [256, 256]\n")
    outputs = ModeAwarePreprocessor.from_mode_config(mode_configs["segmentation_only"], config)(noise_image(240, 320))
    assert tuple(outputs["yolo"].pixel_values.shape) == (3, 320, 320)
    assert tuple(outputs["sam"].pixel_values.shape) == (3, 256, 256)


def test_mode_config_problems_are_config_errors(mode_configs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode config not found"):
        ModeAwarePreprocessor.from_mode_config(tmp_path / "nowhere" / ".mode_config.json")
    mode = ModeConfig.read(mode_configs["detection_only"]).model_copy(update={"recommended_teachers": ["owlvit"]})
    with pytest.raises(ConfigError, match="owlvit"):
        ModeAwarePreprocessor.from_mode_config(mode)
    with pytest.raises(ConfigError, match="yolo"):
        ModeAwarePreprocessor.from_mode_config(mode_configs["detection_only"], {"yolo": {"pad_to": [0, 640]}})
