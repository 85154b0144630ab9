"""The `mlcore` command as a user runs it: exit codes, outputs where documented, errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.data.demo import make_demo_dataset

MLCORE = [sys.executable, "-m", "mlcore.cli.app"]


def mlcore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*MLCORE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=16, seed=2)


def test_validate_writes_outputs_beside_the_json_and_exits_0(demo):
    result = mlcore("validate", "--data", str(demo), "--split", "train:0.7,val:0.15,test:0.15", "--no-progress")
    assert result.returncode == 0, result.stderr
    out = demo.parent / "annotations_prepared"
    for name in (".mode_config.json", "annotations.cleaned.json", "report.json", "train.json", "val.json",
                 "test.json"):
        assert (out / name).is_file(), name
    assert "usable" in result.stdout and "detection_and_segmentation" in result.stdout


def test_json_report_is_machine_readable(demo, tmp_path):
    result = mlcore("validate", "--data", str(demo), "--output", str(tmp_path / "o"), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["usable"] is True and report["num_classes"] == 3


def test_unusable_dataset_exits_2_with_the_reason_and_no_traceback(tmp_path):
    path = make_demo_dataset(tmp_path / "bad", num_images=4)
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 42
    path.write_text(json.dumps(data))
    result = mlcore("validate", "--data", str(path), "--no-progress")
    assert result.returncode == 2
    assert "unknown_category_id" in result.stdout and "annotations[0].category_id" in result.stdout
    assert "not usable" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_missing_file_is_one_message_exit_2(tmp_path):
    result = mlcore("validate", "--data", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "annotation file not found" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_split_is_one_message_exit_2(demo, tmp_path):
    result = mlcore("validate", "--data", str(demo), "--output", str(tmp_path), "--split", "train=0.8")
    assert result.returncode == 2 and "--split" in result.stderr and "Traceback" not in result.stderr


def test_demo_data_command(tmp_path):
    result = mlcore("demo-data", "--output", str(tmp_path / "d"), "--mode", "masks", "--images", "5")
    assert result.returncode == 0
    data = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert len(data["images"]) == 5 and all("bbox" not in a for a in data["annotations"])


def test_help_lists_the_commands():
    result = mlcore("--help")
    assert result.returncode == 0
    for command in ("validate", "demo-data", "run"):
        assert command in result.stdout


def test_generate_configs_writes_valid_configs_for_the_mode(demo, tmp_path):
    from mlcore.config import load_config

    configs = tmp_path / "configs"
    result = mlcore("validate", "--data", str(demo), "--output", str(tmp_path / "o"), "--split",
                    "train:0.8,val:0.2", "--generate-configs", "--configs-dir", str(configs), "--no-progress")
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(configs).as_posix() for p in configs.rglob("*.yaml"))
    assert "distillation/kd_both.yaml" in written and "training/teacher_sam_lora.yaml" in written
    kd = load_config(configs / "distillation" / "kd_both.yaml")
    assert kd.data.class_names == ["square", "circle", "triangle"]
    assert kd.data.train == tmp_path / "o" / "train.json"
    check = mlcore("config", "check", *[str(p) for p in configs.rglob("*.yaml")])
    assert check.returncode == 0 and check.stdout.count("ok ") == len(written)


def test_config_check_reports_a_bad_key_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: quantization\nmethodd: int8_static\n")
    result = mlcore("config", "check", str(bad))
    assert result.returncode == 2 and "methodd" in result.stderr and "Traceback" not in result.stderr


def test_config_check_reports_every_invalid_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("kind: quantization\n")
    bad1, bad2 = tmp_path / "bad1.yaml", tmp_path / "bad2.yaml"
    bad1.write_text("kind: quantization\nmethodd: x\n")
    bad2.write_text("kind: tensorrt\nprecision: int3\n")
    result = mlcore("config", "check", str(bad1), str(good), str(bad2))
    assert result.returncode == 2
    assert "bad1.yaml" in result.stderr and "bad2.yaml" in result.stderr and "ok  " + str(good) in result.stdout


def test_unknown_log_level_is_a_usage_error(demo):
    result = mlcore("--log-level", "LOUD", "validate", "--data", str(demo))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "LOUD" in result.stderr


def test_augment_preview_of_unvalidated_bad_data_is_a_user_error(tmp_path):
    path = make_demo_dataset(tmp_path / "bad", num_images=3, seed=1)
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = {"size": [10, 10], "counts": [100]}  # not the image's size
    path.write_text(json.dumps(data))
    result = mlcore("augment", "preview", "--data", str(path), "--n", "3", "--output", str(tmp_path / "g.png"))
    assert result.returncode == 2 and "mlcore validate" in result.stderr and "Traceback" not in result.stderr
