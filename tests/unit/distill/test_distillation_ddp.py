"""Distillation on several processes (DDP over gloo, two CPU processes): one student, the same on every rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcore.data.mode_config import ModeConfig
from mlcore.distill.setup import distil_on_devices
from mlcore.errors import ConfigError
from mlcore.training.data_order import EpochSampler
from mlcore.training.distributed import resolve_devices
from tests.unit.distill.test_distillation import (count_teacher_images, prepared, run_cli, tiny_teachers, trainer,
                                                   training)

__all__ = ["count_teacher_images"]  # the fixture, imported for this module's tests


@pytest.mark.parametrize("size", [4, 5, 7])
def test_epoch_shards_cover_the_epoch_with_the_same_count_on_every_rank(size: int) -> None:
    shards = [EpochSampler(size, seed=3, rank=rank, world_size=2) for rank in range(2)]
    orders = [shard.order(1) for shard in shards]
    assert len(orders[0]) == len(orders[1]) == shards[0].size == -(-size // 2)
    assert set(orders[0]) | set(orders[1]) == set(range(size))  # padding repeats at most one image


def test_a_gpu_list_is_read_and_a_bad_one_is_a_config_error() -> None:
    assert resolve_devices(None, "cpu") == resolve_devices(1, "cpu")
    assert [str(device) for device in resolve_devices(2, "cpu")] == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="--gpus"):
        resolve_devices("0,x", "cpu")
    with pytest.raises(ConfigError, match="twice"):
        resolve_devices("0,0", "cpu")


def test_cli_bad_gpu_list_is_one_clear_error(tmp_path: Path) -> None:
    completed = run_cli("--data", str(tmp_path / "train.json"), "--val", str(tmp_path / "val.json"), "--teachers",
                        str(tmp_path), "--output", str(tmp_path / "run"), "--gpus", "0,x")
    assert completed.returncode != 0
    assert "--gpus" in completed.stderr and "0,1" in completed.stderr
    assert "Traceback" not in completed.stderr


def distributed_section(run_dir: Path) -> dict:
    return json.loads((run_dir / "student.json").read_text())["distributed"]


def test_two_processes_train_one_student_from_the_parents_teacher_labels_and_resume(tmp_path: Path,
                                                                                    count_teacher_images) -> None:
    from ultralytics import YOLO

    data = prepared(tmp_path, "detection_only", num_images=6)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    train_images = len(json.loads((data / "train.json").read_text())["images"])
    first = distil_on_devices(trainer(data, teachers, tmp_path / "run", training=training(epochs=1)),
                              resolve_devices(2, "cpu"))
    assert sum(count_teacher_images) == train_images  # the parent labelled every image, once
    assert first.teacher_calls == train_images
    section = distributed_section(first.output_dir)
    assert section["world_size"] == 2 and section["backend"] == "gloo"
    assert [rank["teacher_calls"] for rank in section["ranks"]] == [0, 0]  # labels came from the parent's cache
    assert section["ranks"][0]["student_sha256"] == section["ranks"][1]["student_sha256"]  # DDP averaged
    assert sum(rank["samples_per_epoch"]["0"] for rank in section["ranks"]) == train_images
    first_sha256 = section["ranks"][0]["student_sha256"]

    # Every rank resumes from the epoch checkpoint rank 0 wrote, and they stay in step.
    result = distil_on_devices(trainer(data, teachers, tmp_path / "run", training=training(epochs=2), resume=True),
                               resolve_devices(2, "cpu"))
    assert result.teacher_calls == 0 and sum(count_teacher_images) == train_images
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [0, 1]
    assert list(YOLO(str(result.best_path)).names.values()) == ModeConfig.read(data).class_names
    section = distributed_section(result.output_dir)
    assert section["same_weights_on_every_rank"]
    assert section["ranks"][0]["student_sha256"] == section["ranks"][1]["student_sha256"]
    assert section["ranks"][0]["student_sha256"] != first_sha256  # the second epoch trained
    assert sum(rank["samples_per_epoch"]["1"] for rank in section["ranks"]) == train_images

    with pytest.raises(ConfigError, match="already holds checkpoints"):  # a user error in a process, raised here
        distil_on_devices(trainer(data, teachers, tmp_path / "run"), resolve_devices(2, "cpu"))
