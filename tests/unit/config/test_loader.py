"""Reading config files: YAML safety and syntax errors, ${ENV} substitution, placeholders, base inheritance, dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.config import (
    AugmentationConfig,
    StudentYolov8Config,
    TeacherGroundingDinoLoraConfig,
    dump_config,
    load_config,
    load_config_data,
)
from mlcore.errors import ConfigError

# --- files and YAML -------------------------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value) and "not found" in str(caught.value)
    assert caught.value.fix


def test_yaml_syntax_error_names_file_and_line(write) -> None:
    path = write("broken.yaml", "kind: augmentation\nintensity: high\nenvironment:\n  lighting: [stable\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text
    assert "line 5" in text  # the unclosed flow sequence is noticed at end of input
    assert caught.value.fix


def test_yaml_error_reports_the_offending_line(write) -> None:
    path = write("bad.yaml", "kind: augmentation\nintensity: medium\n  seed: 3\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)


def test_python_tags_are_refused(write, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write("evil.yaml", f"kind: augmentation\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "evil.yaml" in str(caught.value) and "python/object" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize(("text", "expected"), [("", "empty"), ("- a\n- b\n", "mapping")])
def test_top_level_must_be_a_mapping(write, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write("x.yaml", text))


def test_unknown_kind_lists_valid_kinds(write) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write("x.yaml", "kind: teacher_dino\n"))
    text = str(caught.value)
    assert "unknown kind 'teacher_dino'" in text
    assert "teacher_grounding_dino_lora" in text and "tensorrt" in text


def test_missing_kind_is_explained(write) -> None:
    with pytest.raises(ConfigError, match="no `kind:` key"):
        load_config(write("x.yaml", "intensity: high\n"))


def test_explicit_schema_is_used_and_checks_kind(write) -> None:
    config = load_config(write("a.yaml", "kind: augmentation\nintensity: high\n"), AugmentationConfig)
    assert isinstance(config, AugmentationConfig) and config.intensity == "high"
    with pytest.raises(ConfigError, match="kind: Input should be 'student_yolov8'"):
        load_config(write("b.yaml", "kind: augmentation\n"), StudentYolov8Config)


# --- ${ENV} substitution --------------------------------------------------------------------------------------------


def test_env_variable_is_substituted(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNS", "/mnt/runs")
    config = load_config(write("c.yaml", "kind: checkpoint_config\nsave_dir: ${RUNS}/teacher\n"))
    assert config.save_dir == Path("/mnt/runs/teacher")


def test_env_default_is_used_when_unset(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNS", raising=False)
    config = load_config(write("c.yaml", "kind: checkpoint_config\nsave_dir: ${RUNS:-runs/local}/ckpt\n"))
    assert config.save_dir == Path("runs/local/ckpt")


def test_env_set_to_empty_wins_over_default(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFIX", "")
    config = load_config(write("c.yaml", "kind: checkpoint_config\nbest_metric: ${PREFIX:-x}map50\n"))
    assert config.best_metric == "map50"


def test_unset_env_without_default_names_file_key_and_variable(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLCORE_TEST_UNSET", raising=False)
    path = write("c.yaml", "kind: teacher_grounding_dino_lora\ntraining:\n  epochs: ${MLCORE_TEST_UNSET}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text and "training.epochs" in text and "MLCORE_TEST_UNSET" in text


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [("7", "epochs", 7), ("3e-4", "lr", 3e-4), ("0.0005", "lr", 5e-4)],
)
def test_whole_value_reference_becomes_a_typed_scalar(write, monkeypatch, value, field, expected) -> None:
    monkeypatch.setenv("MLCORE_TEST_VALUE", value)
    path = write("t.yaml", f"kind: teacher_grounding_dino_lora\ntraining:\n  {field}: ${{MLCORE_TEST_VALUE}}\n")
    data = load_config_data(path)
    assert data["training"][field] == expected and type(data["training"][field]) is type(expected)
    assert getattr(load_config(path).training, field) == expected


def test_default_becomes_typed_too(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EPOCHS", raising=False)
    path = write("t.yaml", "kind: checkpoint_config\nresume: ${RESUME:-true}\nkeep_last_k: ${EPOCHS:-5}\n")
    data = load_config_data(path)
    assert data["resume"] is True and data["keep_last_k"] == 5


def test_reference_inside_longer_text_stays_text(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N", "5")
    data = load_config_data(write("t.yaml", "kind: checkpoint_config\nbest_metric: map${N}\n"))
    assert data["best_metric"] == "map5"


def test_env_values_cannot_inject_yaml_structure(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRIC", "map50\nbest_mode: min")
    config = load_config(write("t.yaml", "kind: checkpoint_config\nbest_metric: ${METRIC}\n"))
    assert config.best_metric == "map50\nbest_mode: min"
    assert config.best_mode == "max"


def test_escaped_reference_is_literal(write) -> None:
    data = load_config_data(write("t.yaml", "kind: checkpoint_config\nbest_metric: $${NOT_A_VAR}\n"))
    assert data["best_metric"] == "${NOT_A_VAR}"


def test_malformed_reference_is_an_error(write) -> None:
    with pytest.raises(ConfigError, match="best_metric: malformed variable reference"):
        load_config(write("t.yaml", "kind: checkpoint_config\nbest_metric: ${1BAD}\n"))


def test_keys_are_not_substituted(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY", "intensity")
    with pytest.raises(ConfigError, match=r"unknown key '\$\{KEY\}'"):
        load_config(write("t.yaml", "kind: augmentation\n${KEY}: high\n"))


# --- placeholders -----------------------------------------------------------------------------------------------------


def test_unfilled_placeholder_means_not_set(write) -> None:
    text = 'kind: student_yolov8\ndata:\n  class_names: "{{class_names}}"\n  train: "{{ dataset_train }}"\n'
    path = write("s.yaml", text)
    config = load_config(path)
    assert config.data.class_names is None and config.data.train is None


def test_unfilled_placeholder_in_child_keeps_the_base_value(write) -> None:
    write("base.yaml", "kind: student_yolov8\ndata:\n  class_names: [a, b]\n")
    child = write("child.yaml", 'base: base.yaml\ndata:\n  class_names: "{{class_names}}"\n')
    assert load_config(child).data.class_names == ["a", "b"]


def test_placeholder_inside_a_longer_value_is_an_error(write) -> None:
    path = write("s.yaml", 'kind: checkpoint_config\nsave_dir: "runs/{{dataset_train}}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "save_dir: unfilled placeholder {{dataset_train}}" in str(caught.value)
    assert "s.yaml" in str(caught.value)


# --- base inheritance -----------------------------------------------------------------------------------------------


def test_base_deep_merges_dicts_and_replaces_lists(write) -> None:
    write(
        "base.yaml",
        """\
        kind: kd_both
        losses:
          feature_distillation_loss:
            layers: [15, 18, 21]
            adapter_channels: 128
          logit_distillation_loss:
            temperature: 2.0
        teacher_score_threshold: 0.4
        """,
    )
    child = write(
        "child.yaml",
        """\
        base: base.yaml
        losses:
          feature_distillation_loss:
            layers: [21]
        teacher_score_threshold: 0.5
        """,
    )
    data = load_config_data(child)
    assert "base" not in data
    config = load_config(child)
    assert config.losses.feature_distillation_loss.layers == [21]  # list replaced, not appended
    assert config.losses.feature_distillation_loss.adapter_channels == 128  # sibling kept from base
    assert config.losses.logit_distillation_loss.temperature == 2.0  # untouched branch kept
    assert config.teacher_score_threshold == 0.5  # scalar replaced


def test_base_chain_applies_in_order(write) -> None:
    write("a.yaml", "kind: training_dynamics\nlr: 0.1\nseed: 1\nscheduler: step\n")
    write("b.yaml", "base: a.yaml\nlr: 0.2\nseed: 2\n")
    c = write("c.yaml", "base: b.yaml\nlr: 0.3\n")
    config = load_config(c)
    assert (config.lr, config.seed, config.scheduler) == (0.3, 2, "step")


def test_base_path_is_relative_to_the_file_not_the_cwd(write, tmp_path: Path, monkeypatch) -> None:
    write("configs/common/base.yaml", "kind: augmentation\nintensity: high\n")
    child = write("configs/teams/child.yaml", "base: ../common/base.yaml\nseed: 3\n")
    monkeypatch.chdir(tmp_path / "configs" / "common")
    config = load_config(child)
    assert (config.intensity, config.seed) == ("high", 3)


def test_base_cycle_is_an_error(write) -> None:
    write("a.yaml", "kind: augmentation\nbase: b.yaml\n")
    b = write("b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(b)


def test_self_reference_is_a_cycle(write) -> None:
    with pytest.raises(ConfigError, match="cycle"):
        load_config(write("a.yaml", "kind: augmentation\nbase: a.yaml\n"))


def test_missing_base_names_the_child_and_the_base(write) -> None:
    child = write("child.yaml", "kind: augmentation\nbase: missing.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_config(child)
    assert "child.yaml" in str(caught.value) and "missing.yaml" in str(caught.value)


def test_base_may_use_env_substitution(write, tmp_path: Path, monkeypatch) -> None:
    write("shared/base.yaml", "kind: augmentation\nintensity: low\n")
    monkeypatch.setenv("MLCORE_TEST_SHARED", str(tmp_path / "shared"))
    child = write("child.yaml", "base: ${MLCORE_TEST_SHARED}/base.yaml\n")
    assert load_config(child).intensity == "low"


# --- dump ------------------------------------------------------------------------------------------------------------


def test_dump_then_load_round_trips(tmp_path: Path) -> None:
    config = TeacherGroundingDinoLoraConfig.model_validate(
        {"data": {"class_names": ["cat", "dog"], "num_classes": 2}, "class_prompts": {"cat": ["kitten"]}}
    )
    config.lora.r = 4
    target = tmp_path / "out" / "teacher.yaml"
    dump_config(config, target)
    assert target.read_text(encoding="utf-8").startswith("kind: teacher_grounding_dino_lora\n")
    assert load_config(target) == config
    assert [p.name for p in target.parent.iterdir()] == ["teacher.yaml"]  # no temp file left behind


def test_dump_replaces_existing_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "aug.yaml"
    target.write_text("old", encoding="utf-8")
    dump_config(AugmentationConfig(intensity="high", characteristics=["low_contrast"]), target)
    assert load_config(target).characteristics == ["low_contrast"]
