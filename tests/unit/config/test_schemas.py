"""Schema rules a user relies on: kind-specific restrictions, YAML-friendly values, real LoRA module names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.config import (
    StudentFastSamConfig,
    TeacherGroundingDinoLoraConfig,
    TeacherSamLoraConfig,
    load_config,
)
from mlcore.config.schemas.common import ANNOTATION_MODES
from mlcore.config.schemas.teachers import GROUNDING_DINO_LORA_TARGETS, SAM_LORA_TARGETS
from mlcore.errors import ConfigError


def test_kd_detection_only_refuses_segmentation_loss(write) -> None:
    path = write("kd.yaml", "kind: kd_detection_only\nlosses:\n  segmentation_loss:\n    enabled: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}: losses.segmentation_loss.enabled: kd_detection_only trains boxes only" in text
    assert "kd_both.template.yaml" in text  # says which template to use instead


def test_kd_detection_only_defaults_keep_masks_off_even_when_losses_are_partly_set(write) -> None:
    path = write("kd.yaml", "kind: kd_detection_only\nlosses:\n  segmentation_loss:\n    weight: 2.0\n")
    config = load_config(path)
    assert config.losses.segmentation_loss.enabled is False
    assert config.losses.detection_loss.enabled is True


def test_kd_segmentation_only_refuses_box_and_class_losses(write) -> None:
    for component in ("detection_loss", "logit_distillation_loss"):
        path = write("kd.yaml", f"kind: kd_segmentation_only\nlosses:\n  {component}:\n    enabled: true\n")
        with pytest.raises(ConfigError, match=f"losses.{component}.enabled: kd_segmentation_only"):
            load_config(path)


def test_kd_needs_at_least_one_loss(write) -> None:
    text = "kind: kd_detection_only\nlosses:\n" + "".join(
        f"  {name}:\n    enabled: false\n"
        for name in ("detection_loss", "feature_distillation_loss", "logit_distillation_loss")
    )
    with pytest.raises(ConfigError, match="every loss component is disabled"):
        load_config(write("kd.yaml", text))


def test_union_rule_threshold_range(write) -> None:
    path = write("kd.yaml", "kind: kd_both\nground_truth:\n  rule: union\n  union_iou_threshold: 1.5\n")
    with pytest.raises(ConfigError, match="ground_truth.union_iou_threshold"):
        load_config(path)


def test_yaml_off_means_mixed_precision_off(write) -> None:
    # YAML 1.1 reads a bare `off` as false; the user means the word.
    path = write("t.yaml", "kind: teacher_sam_lora\ntraining:\n  mixed_precision: off\n")
    assert load_config(path).training.mixed_precision == "off"


@pytest.mark.parametrize(("written", "expected"), [("0", "0"), ("[0, 1]", "0,1"), ("cpu", "cpu"), ("0,1", "0,1")])
def test_student_device_accepts_yaml_spellings(write, written: str, expected: str) -> None:
    path = write("s.yaml", f"kind: student_yolov8_seg\ntraining:\n  device: {written}\n")
    assert load_config(path).training.device == expected


def test_student_weights_must_be_a_local_pt_file(write) -> None:
    path = write("s.yaml", "kind: student_yolov8\nmodel:\n  weights: yolov8n.onnx\n")
    with pytest.raises(ConfigError, match="model.weights: weights must be a local .pt file"):
        load_config(path)


def test_fastsam_is_single_class(write) -> None:
    assert "class_names" not in StudentFastSamConfig.model_fields["data"].annotation.model_fields
    path = write("f.yaml", "kind: student_fastsam\ndata:\n  class_names: [a, b]\n")
    with pytest.raises(ConfigError, match="unknown key 'class_names'.*class_name"):
        load_config(path)


def test_class_names_and_num_classes_must_agree(write) -> None:
    path = write("s.yaml", "kind: student_yolov8\ndata:\n  class_names: [a, b, a]\n")
    with pytest.raises(ConfigError, match="data: class_names has duplicates: a"):
        load_config(path)


def test_class_prompts_must_name_known_classes(write) -> None:
    path = write(
        "t.yaml",
        "kind: teacher_grounding_dino_lora\ndata:\n  class_names: [cat, dog]\nclass_prompts:\n  kat: [kitten]\n",
    )
    expected = r"class_prompts names classes not in data.class_names: kat \(valid: cat, dog\)"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_augmentation_unknown_characteristic_lists_valid_ones(write) -> None:
    path = write("a.yaml", "kind: augmentation\ncharacteristics: [glowing]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    for name in ("changes_shape", "reflective_surface", "similar_to_background", "partially_hidden"):
        assert name in str(caught.value)


def test_tensorrt_profile_must_be_ordered(write) -> None:
    path = write("t.yaml", "kind: tensorrt\nprofile:\n  min_batch: 4\n  opt_batch: 2\n")
    with pytest.raises(ConfigError, match="profile: need min_batch <= opt_batch <= max_batch"):
        load_config(path)


def test_preprocessing_partial_override_keeps_model_defaults(write) -> None:
    config = load_config(write("p.yaml", "kind: preprocessing\nsam:\n  pad_value: 10\n"))
    assert config.sam.pad_value == 10
    assert config.sam.pad_to == (1024, 1024) and config.sam.mean == (123.675, 116.28, 103.53)
    assert config.grounding_dino.mean == (0.485, 0.456, 0.406) and config.yolo.pad_value == 114


def test_sam_embedding_cache_needs_frozen_encoder(write) -> None:
    path = write("t.yaml", "kind: teacher_sam_lora\nfreeze:\n  image_encoder: false\n")
    with pytest.raises(ConfigError, match="cache_image_embeddings needs freeze.image_encoder"):
        load_config(path)


def test_weights_dir_defaults_to_models_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TeacherSamLoraConfig().model.weights_dir is None
    monkeypatch.setenv("MLCORE_MODELS_DIR", "/models")
    assert TeacherGroundingDinoLoraConfig().model.weights_dir == Path("/models")
    shipped = Path(__file__).resolve().parents[3] / "configs" / "templates" / "teacher_sam_lora.template.yaml"
    assert load_config(shipped).model.weights_dir == Path("/models")


# Real module names from transformers 5.x (see ENGINEERING.md).
DINO_DECODER = [
    "model.decoder.layers.0.self_attn.query",
    "model.decoder.layers.5.encoder_attn_text.out_proj",
    "model.decoder.layers.2.self_attn.value",
]
DINO_ELSEWHERE = [
    "model.backbone.conv_encoder.model.encoder.layers.0.blocks.0.attention.self.q_proj",
    "model.encoder.layers.0.text_enhancer_layer.self_attn.query",
    "model.decoder.layers.0.encoder_attn.value_proj",
    "model.decoder.layers.0.self_attn.query.lora_A",
]
SAM_DECODER = [
    "mask_decoder.transformer.layers.0.self_attn.q_proj",
    "mask_decoder.transformer.layers.1.cross_attn_token_to_image.v_proj",
    "mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj",
    "mask_decoder.transformer.final_attn_token_to_image.k_proj",
]
SAM_ELSEWHERE = [
    "vision_encoder.layers.0.attn.qkv",
    "vision_encoder.layers.0.attn.proj",
    "prompt_encoder.shared_embedding",
]


def test_lora_target_defaults_hit_only_the_intended_layers() -> None:
    # PEFT full-matches a string target_modules against each module name.
    assert all(re.fullmatch(GROUNDING_DINO_LORA_TARGETS, name) for name in DINO_DECODER)
    assert not any(re.fullmatch(GROUNDING_DINO_LORA_TARGETS, name) for name in DINO_ELSEWHERE)
    assert all(re.fullmatch(SAM_LORA_TARGETS, name) for name in SAM_DECODER)
    assert not any(re.fullmatch(SAM_LORA_TARGETS, name) for name in SAM_ELSEWHERE)
    assert TeacherGroundingDinoLoraConfig().lora.target_modules == GROUNDING_DINO_LORA_TARGETS
    assert TeacherSamLoraConfig().lora.target_modules == SAM_LORA_TARGETS


def test_invalid_target_regex_is_reported(write) -> None:
    path = write("t.yaml", "kind: teacher_sam_lora\nlora:\n  target_modules: '(q_proj'\n")
    with pytest.raises(ConfigError, match="lora.target_modules: target_modules is not a valid regex"):
        load_config(path)


def test_annotation_modes_match_the_dataset_validator() -> None:
    from mlcore.data.mode import MODES

    assert tuple(ANNOTATION_MODES) == tuple(MODES)


def test_config_package_does_not_import_prefect() -> None:
    code = "import sys, mlcore.config; sys.exit(1 if 'prefect' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
