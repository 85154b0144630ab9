"""The registry: the mode picks the student, names come from the caller, weights only from local files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mlcore.data.mode_config import ModeConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.students import Student, get_student_model, parse_student_name, student_name, valid_student_names
from mlcore.students.registry import student_kind
from tests.unit.students.conftest import CLASS_NAMES


@pytest.mark.parametrize(("kind", "task", "yaml_head"), [
    ("yolov8", "detect", "Detect"), ("yolov8_seg", "segment", "Segment"), ("fastsam", "segment", "Segment")])
def test_each_kind_builds_at_size_n_with_the_callers_classes(make_student: Callable[..., Student], kind: str,
                                                             task: str, yaml_head: str) -> None:
    student = make_student(kind)
    expected = ["object"] if kind == "fastsam" else CLASS_NAMES
    assert (student.kind, student.size, student.task) == (kind, "n", task)
    assert student.class_names == expected and student.model.names == dict(enumerate(expected))
    assert student.model.model[-1].nc == len(expected) == student.num_classes
    assert type(student.model.model[-1]).__name__ == yaml_head and student.model.yaml["scale"] == "n"
    assert student.stride == 32
    assert (student.model.args.box, student.model.args.cls, student.model.args.dfl) == (7.5, 0.5, 1.5)


def test_kind_follows_the_mode_configs_recommendation(mode_config_paths: dict[str, Path]) -> None:
    for mode, path in mode_config_paths.items():
        config = ModeConfig.read(path)
        assert student_kind(mode, config.num_classes) == parse_student_name(config.recommended_student)[0]
    assert student_kind("detection_only", 1) == "yolov8"
    assert student_kind("segmentation_only", 1) == "fastsam"
    assert student_kind("segmentation_only", 2) == "yolov8_seg"
    assert student_kind("detection_and_segmentation", 1) == "yolov8_seg"


def test_a_mode_config_gives_kind_and_class_names(mode_config_paths: dict[str, Path]) -> None:
    config = ModeConfig.read(mode_config_paths["detection_and_segmentation"])
    student = get_student_model(config, "n")
    assert student.kind == "yolov8_seg" and student.class_names == config.class_names


def test_fastsam_is_single_class_named_by_one_given_name() -> None:
    rock = get_student_model("segmentation_only", class_names=["rock"])
    assert (rock.kind, rock.class_names) == ("fastsam", ["rock"])
    assert get_student_model("segmentation_only", class_names=["a", "b"], kind="fastsam").class_names == ["object"]
    assert get_student_model("detection_only", num_classes=2).class_names == ["class0", "class1"]


def test_bad_requests_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="2 class names"):
        get_student_model("detection_only", num_classes=3, class_names=["a", "b"])
    with pytest.raises(ConfigError, match="size"):
        get_student_model("detection_only", size="q", class_names=["a"])
    with pytest.raises(ConfigError, match="kind"):
        get_student_model("detection_only", class_names=["a"], kind="yolov5")
    with pytest.raises(ConfigError, match="needs its classes"):
        get_student_model("detection_only")


@pytest.mark.parametrize(("name", "expected"), [
    ("yolov8n", ("yolov8", "n", "silu")), ("yolov8s-seg", ("yolov8_seg", "s", "silu")),
    ("fastsam-s", ("fastsam", "s", "silu")), ("fastsam-x", ("fastsam", "x", "silu")),
    ("fastsam", ("fastsam", "s", "silu")),
    ("YOLOv8x-seg", ("yolov8_seg", "x", "silu")), ("yolov8n-relu", ("yolov8", "n", "relu")),
    ("yolov8m-seg-relu", ("yolov8_seg", "m", "relu")), ("fastsam-relu", ("fastsam", "s", "relu"))])
def test_parse_student_name(name: str, expected: tuple[str, str, str]) -> None:
    assert parse_student_name(name) == expected
    assert parse_student_name(student_name(*expected)) == expected


def test_a_relu_student_keeps_its_activation_and_leaves_the_next_student_silu(tmp_path: Path) -> None:
    """ultralytics applies a yaml's activation by setting a class attribute; building a ReLU student must not turn
    the next one (or ultralytics' own models) into ReLU, and the checkpoint keeps it."""
    from ultralytics.nn.modules import Conv

    relu = get_student_model("detection_only", class_names=["a"], activation="relu")
    silu = get_student_model("detection_only", class_names=["a"])
    assert (relu.activation, silu.activation) == ("relu", "silu")
    assert not any(isinstance(module, torch.nn.SiLU) for module in relu.model.modules())
    assert not any(isinstance(module, torch.nn.ReLU) for module in silu.model.modules())
    assert isinstance(Conv.default_act, torch.nn.SiLU)
    loaded = Student.load(relu.save(tmp_path / "relu.pt", imgsz=64))
    assert loaded.activation == "relu" and loaded.model.yaml["activation"] == "nn.ReLU()"
    pixels = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(pixels)[0], relu.model.eval()(pixels)[0], atol=0.05, rtol=0)
    with pytest.raises(ConfigError, match="activation"):
        get_student_model("detection_only", class_names=["a"], activation="gelu")


def test_unknown_student_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_student_name("yolov5n")
    assert "yolov8n-seg" in str(info.value) and "fastsam-x" in str(info.value)
    assert all(parse_student_name(name) for name in valid_student_names())


def test_weights_with_another_class_count_transfer_all_but_the_class_head(
        tmp_path: Path, make_student: Callable[..., Student], caplog: pytest.LogCaptureFixture) -> None:
    source = make_student("yolov8_seg", ["a", "b", "c", "d", "e"])
    path = source.save(tmp_path / "source.pt")
    saved = Student.load(path).model.state_dict()
    with caplog.at_level(logging.INFO, logger="mlcore"):
        student = get_student_model("detection_and_segmentation", class_names=["x", "y"], weights=path)
    state = student.model.state_dict()
    assert student.class_names == ["x", "y"] and student.model.model[-1].nc == 2
    assert torch.equal(state["model.0.conv.weight"], saved["model.0.conv.weight"])
    assert torch.equal(state["model.22.proto.cv1.conv.weight"], saved["model.22.proto.cv1.conv.weight"])
    last_cls = "model.22.cv3.0.2.weight"
    assert state[last_cls].shape[0] == 2 and saved[last_cls].shape[0] == 5
    line = next(record.getMessage() for record in caplog.records if "transferred" in record.getMessage())
    transferred, total = map(int, line.split("transferred ")[1].split(" ")[0].split("/"))
    assert total - 6 <= transferred < total  # only the per-scale class convolutions (weight + bias) differ


def test_weights_with_the_same_classes_transfer_everything(tmp_path: Path,
                                                           make_student: Callable[..., Student]) -> None:
    source = make_student("yolov8")
    path = source.save(tmp_path / "same.pt")
    student = get_student_model("detection_only", class_names=CLASS_NAMES, weights=path)
    saved = Student.load(path).model.state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in student.model.state_dict().items())


@pytest.mark.parametrize("weights", ["yolov8n.pt", "missing/yolov8n.pt"])
def test_missing_or_bare_name_weights_never_download(weights: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as info:
        get_student_model("detection_only", class_names=["a"], weights=weights)
    message = str(info.value)
    assert weights in message and "never downloads" in message and "local" in message
    assert not any(tmp_path.iterdir())  # nothing fetched, nothing written
