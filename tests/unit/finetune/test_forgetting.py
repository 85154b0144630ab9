"""The forgetting check and the teachers' configured input sizes (tiny presets, CPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from mlcore.config.schemas.teachers import GroundingDinoForgetting, TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import ModeConfig
from mlcore.errors import ConfigError
from mlcore.finetune.evaluation import dino_detections
from mlcore.finetune.forgetting import (control_prompt_names, control_prompt_report, per_class_scores,
                                        untrained_class_report)
from mlcore.finetune.inputs import check_sam_image_size, dino_preprocessor
from mlcore.teachers import apply_lora_to_grounding_dino, build_prompt_chunks, load_grounding_dino, load_sam
from mlcore.teachers.grounding_dino import Detections
from tests.unit.finetune.test_trainer import prepared


def test_untrained_classes_report_their_change() -> None:
    names = ["cat", "dog", "bird"]
    table = per_class_scores({0: 0.5, 1: 0.4, 2: None}, {0: 0.7, 1: 0.1, 2: None}, names)
    assert table["cat"]["change"] == pytest.approx(0.2) and table["bird"]["change"] is None
    report = untrained_class_report(table, Counter({0: 3}), Counter({0: 1, 1: 2}), names, "ap50_95")
    assert list(report["classes"]) == ["dog"]  # in val, never in training; bird is in neither
    assert report["mean_change"] == pytest.approx(-0.3)


def test_control_prompts_skip_the_users_classes_and_synonyms() -> None:
    settings = GroundingDinoForgetting(control_prompts=["person", "Car", "dog", "truck"])
    assert control_prompt_names(settings, ["car", "forklift"], {"forklift": ["truck"]}) == ["person", "dog"]


@pytest.fixture(scope="module")
def val_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[CocoDataset, Path]:
    data = prepared(tmp_path_factory.mktemp("forget"), "detection_only")
    return CocoDataset(data / "val.json", ModeConfig.read(data).images_root), data


def test_an_unchanged_model_scores_1_and_a_silent_one_0_on_the_control_prompts(val_data) -> None:
    dataset, _ = val_data
    teacher = load_grounding_dino("tiny")
    teacher.model = apply_lora_to_grounding_dino(teacher.model)  # LoRA B = 0: the adapted model is the base
    names = ["person", "dog"]
    chunks = build_prompt_chunks(teacher.tokenizer, names)

    def detect(prompt_chunks, indices):
        return dino_detections(teacher, dataset, indices, prompt_chunks, len(names))

    def detect_base(prompt_chunks, indices):
        with teacher.model.disable_adapter():
            return detect(prompt_chunks, indices)

    settings = GroundingDinoForgetting(score_threshold=0.0, max_images=2)
    report = control_prompt_report(detect_base, detect, dataset, chunks, names, settings)
    assert report["images"] == min(2, len(dataset)) and report["reference_detections"] > 0
    assert report["value"] == pytest.approx(1.0)

    def nothing(prompt_chunks, indices):
        empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                           torch.zeros(0, dtype=torch.long))
        return [(index, empty) for index in indices]

    assert control_prompt_report(detect_base, nothing, dataset, chunks, names, settings)["value"] == 0.0
    high = GroundingDinoForgetting(score_threshold=1.0, max_images=2)
    silent = control_prompt_report(nothing, detect, dataset, chunks, names, high)
    assert silent["value"] is None and "nothing to compare" in silent["note"]


def test_grounding_dino_sizes_come_from_the_config_else_the_preset() -> None:
    teacher = load_grounding_dino("tiny")
    preset = dino_preprocessor(teacher, TeacherGroundingDinoLoraConfig()).config
    assert (preset.shortest_edge, preset.longest_edge) == (160, 256)
    config = TeacherGroundingDinoLoraConfig(training={"shortest_edge": 200, "longest_edge": 300})
    chosen = dino_preprocessor(teacher, config).config
    assert (chosen.shortest_edge, chosen.longest_edge) == (200, 300)
    with pytest.raises(ConfigError, match="shortest_edge 300 exceeds longest_edge 256") as caught:
        dino_preprocessor(teacher, TeacherGroundingDinoLoraConfig(training={"shortest_edge": 300}))
    assert caught.value.where == "teacher_grounding_dino_lora.training"


def test_sam_image_size_must_be_the_models_own() -> None:
    teacher = load_sam("tiny")
    check_sam_image_size(teacher, TeacherSamLoraConfig())  # null: the model's
    check_sam_image_size(teacher, TeacherSamLoraConfig(training={"image_size": 256}))
    with pytest.raises(ConfigError, match="takes 256 x 256") as caught:
        check_sam_image_size(teacher, TeacherSamLoraConfig(training={"image_size": 1024}))
    assert caught.value.where == "teacher_sam_lora.training.image_size" and "256" in caught.value.fix
