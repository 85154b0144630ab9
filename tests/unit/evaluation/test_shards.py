"""Evaluation in shards: each shard predicts part of the split, the merge scores once, exactly as one run does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.errors import ConfigError, DatasetError
from mlcore.evaluation import Shard, evaluate_teacher, merge_shards, predict_teacher, score_predictions
from mlcore.evaluation.coco_map import load_annotations
from mlcore.evaluation.commands import evaluate_shards, evaluate_target, predict_target_shard
from mlcore.evaluation.shards import shard_file_name, write_shard
from mlcore.io import sha256_file
from mlcore.students import get_student_model
from tests.unit.evaluation.conftest import CATEGORY_IDS, NAMES, read_json

BATCH = 2  # 5 images: batches of 2, 2, 1, so each of 3 shards gets one


@pytest.fixture(scope="module")
def student_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = get_student_model("detection_and_segmentation", class_names=NAMES, kind="yolov8_seg")
    return student.save(tmp_path_factory.mktemp("student") / "best.pt", imgsz=64)


def predicted_shards(data: Path, folder: Path, count: int, **target: object) -> list[Path]:
    files = []
    for index in range(count):
        shard = Shard(index, count)
        written = predict_target_shard(data, shard, folder / shard_file_name(shard), device="cpu", batch_size=BATCH,
                                       progress=False, **target)
        assert (written.index, written.count) == (index, count) and written.path.is_file()
        files.append(written.path)
    return files


def without_time(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key != "seconds"}


def test_three_shards_merged_score_exactly_as_one_run(demo_split: tuple[Path, CocoDataset], student_file: Path,
                                                      tmp_path: Path) -> None:
    data, dataset = demo_split
    whole, whole_files = evaluate_target(data, model=student_file, output=tmp_path / "whole", device="cpu",
                                         batch_size=BATCH, progress=False)
    files = predicted_shards(data, tmp_path / "sharded" / "shards", 3, model=student_file)
    images = [read_json(path)["image_ids"] for path in files]
    assert all(images) and sorted(sum(images, [])) == sorted(image.id for image in dataset.images)
    merged, merged_files = evaluate_shards(data, files, output=tmp_path / "sharded")
    assert len(whole.results) > 0 and merged.results == whole.results
    assert merged.metrics() == whole.metrics() and merged.num_images == whole.num_images == len(dataset)
    assert without_time(read_json(merged_files["metrics"])) == without_time(read_json(whole_files["metrics"]))
    for name in ("pr_curves", "predictions"):
        assert merged_files[name].read_bytes() == whole_files[name].read_bytes(), name
    assert merged_files["pr_curve_segm"].is_file()


def test_teacher_shards_merged_equal_the_teachers_evaluation(demo_split: tuple[Path, CocoDataset],
                                                             tmp_path: Path) -> None:
    from mlcore.teachers import GroundedSAM, load_grounding_dino, load_sam

    data, dataset = demo_split
    with torch.random.fork_rng():
        torch.manual_seed(0)
        grounded = GroundedSAM(NAMES, grounding_dino=load_grounding_dino("tiny"), sam=load_sam("tiny"))
    whole = evaluate_teacher(grounded, dataset, data, CATEGORY_IDS, batch_size=BATCH, max_det=5)
    checksum = sha256_file(data)
    files = [write_shard(predict_teacher(grounded, dataset, data, CATEGORY_IDS, batch_size=BATCH, max_det=5,
                                         shard=Shard(index, 2)), Shard(index, 2), tmp_path / f"{index}.json",
                         data_sha256=checksum).path for index in (1, 0)]  # any order
    merged = score_predictions(merge_shards(files, load_annotations(data), data_sha256=checksum), data)
    assert len(whole.results) > 0 and merged.results == whole.results
    assert without_time(merged.to_dict()) == without_time(whole.to_dict())


def test_a_missing_foreign_or_mismatched_shard_is_refused(demo_split: tuple[Path, CocoDataset], student_file: Path,
                                                          tmp_path: Path) -> None:
    data, _ = demo_split
    files = predicted_shards(data, tmp_path, 3, model=student_file)
    with pytest.raises(DatasetError, match=r"missing: \[2\]"):
        evaluate_shards(data, [files[0], files[2]])
    with pytest.raises(DatasetError, match="not found"):
        evaluate_shards(data, [*files[:2], tmp_path / "never-written.json"])
    edited = json.loads(data.read_text())
    edited["info"] = {"description": "another version"}
    other = tmp_path / "other.json"
    other.write_text(json.dumps(edited))
    with pytest.raises(DatasetError, match="another version of the annotation file"):
        evaluate_shards(other, files)
    changed = read_json(files[1])
    changed["settings"]["conf"] = 0.25
    files[1].write_text(json.dumps(changed))
    with pytest.raises(DatasetError, match=r"settings\.conf"):
        evaluate_shards(data, files)


def test_a_shard_outside_the_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="shard index 3 of 3"):
        Shard(3, 3)
    with pytest.raises(ConfigError):
        Shard(0, 0)
    assert Shard(1, 3).batches(7, 2) == [[2, 3]] and Shard(0, 3).batches(7, 2) == [[0, 1], [6]]
    assert Shard(1, 2).pick("abcde") == ["b", "d"]
