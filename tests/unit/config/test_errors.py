"""Validation errors are one ConfigError listing every problem as `<file>: <dotted.key>: <message>`."""

from __future__ import annotations

import pytest

from mlcore.config import load_config
from mlcore.errors import ConfigError


def _error(path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.fix, "every config error carries a fix"
    return str(caught.value)


def test_bad_value_names_file_and_dotted_key(write) -> None:
    path = write("teacher.yaml", "kind: teacher_grounding_dino_lora\nlora:\n  r: 0\n")
    assert f"{path}: lora.r: Input should be greater than 0" in _error(path)


def test_unknown_key_names_file_path_and_lists_valid_keys(write) -> None:
    path = write("teacher.yaml", "kind: teacher_grounding_dino_lora\nlora:\n  rank: 8\n")
    text = _error(path)
    assert f"{path}: lora.rank: unknown key 'rank'" in text
    assert "valid keys here: r, alpha, dropout, target_modules, bias, max_trainable_fraction" in text


def test_unknown_top_level_key_suggests_the_close_one(write) -> None:
    path = write("aug.yaml", "kind: augmentation\nintesity: high\n")
    text = _error(path)
    assert f"{path}: intesity: unknown key 'intesity' (did you mean 'intensity'?)" in text
    assert "valid keys here: kind, characteristics, environment, intensity, seed" in text


def test_unknown_key_deep_inside_nested_sections(write) -> None:
    path = write("kd.yaml", "kind: kd_both\nlosses:\n  logit_distillation_loss:\n    temp: 2\n")
    text = _error(path)
    assert "losses.logit_distillation_loss.temp: unknown key 'temp'" in text
    assert "valid keys here: enabled, weight, temperature" in text


def test_all_problems_are_reported_at_once(write) -> None:
    path = write(
        "student.yaml",
        "kind: student_yolov8\nmodel:\n  size: q\ntraining:\n  imgsz: 650\n  epochs: -1\n  device: gpu\n",
    )
    text = _error(path)
    assert "invalid config (4 problems)" in text
    for key in ("model.size", "training.imgsz", "training.epochs", "training.device"):
        assert f"{path}: {key}: " in text
    assert "Input should be 'n', 's', 'm', 'l' or 'x' (got 'q')" in text
    assert "multiple of 32" in text


def test_list_items_are_addressed_by_index(write) -> None:
    path = write("aug.yaml", "kind: augmentation\ncharacteristics: [low_contrast, shiny]\n")
    assert f"{path}: characteristics[1]: Input should be 'changes_shape'" in _error(path)


def test_union_fields_report_one_clean_line(write) -> None:
    path = write("t.yaml", "kind: teacher_sam_lora\nlora:\n  target_modules: 5\n")
    text = _error(path)
    assert f"{path}: lora.target_modules: Input should be a valid string or Input should be a valid list" in text
    assert "list[str]" not in text  # pydantic's internal union tags are not key paths


def test_error_points_at_the_base_file_that_set_the_value(write) -> None:
    base = write("base.yaml", "kind: teacher_sam_lora\nbox_jitter_fraction: 0.9\n")
    child = write("child.yaml", "base: base.yaml\nloss:\n  bcee: 1\n")
    text = _error(child)
    assert f"{base}: box_jitter_fraction: Input should be less than or equal to 0.5" in text
    assert f"{child}: loss.bcee: unknown key 'bcee'" in text


def test_section_of_the_wrong_type_is_named(write) -> None:
    path = write("q.yaml", "kind: quantization\ncalibration: 100\n")
    assert f"{path}: calibration: " in _error(path)


def test_fix_points_to_the_documented_template(write) -> None:
    path = write("q.yaml", "kind: quantization\nmethod: int4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "quantization.template.yaml" in caught.value.fix
    assert caught.value.where == str(path)
