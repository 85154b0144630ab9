"""Teacher labelling in shards: together they write exactly the labels distillation needs, so it calls no teacher."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlcore.data.demo import make_demo_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.distill.labelling import label_shard
from mlcore.distill.setup import train_student
from mlcore.evaluation.shards import Shard
from tests.unit.distill.test_distillation import (  # noqa: F401 (count_teacher_images: a fixture)
    IMGSZ,
    count_teacher_images,
    prepared,
    tiny_teachers,
    trainer,
    training,
)


def label_files(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.npz")}


def test_two_shards_label_what_one_run_would_and_distillation_then_calls_no_teacher(
        tmp_path: Path, count_teacher_images: list[int]) -> None:
    data = prepared(tmp_path, "detection_and_segmentation")
    extra = make_demo_dataset(tmp_path / "extra", mode="both", num_images=3, image_size=(160, 128), seed=9)
    unlabeled = tmp_path / "unlabeled"
    shutil.copytree(extra.parent / "images", unlabeled)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    shared = tmp_path / "shared_cache"

    # the reference: one distillation run labelling everything itself, into its default folder
    alone = trainer(data, teachers, tmp_path / "alone", unlabeled_dir=unlabeled, training=training(epochs=1)).run()
    expected = label_files(tmp_path / "alone" / "teacher_cache")
    assert alone.teacher_calls == len(expected) > 3

    # each shard as its own worker would run it: its own trainer, the shared folder
    shards = [label_shard(trainer(data, teachers, tmp_path / "run", unlabeled_dir=unlabeled, teacher_cache=shared),
                          Shard(index, 2)) for index in range(2)]
    assert [shard.index for shard in shards] == [0, 1] and all(shard.labelled > 0 for shard in shards)
    assert sum(shard.labelled for shard in shards) == sum(shard.images for shard in shards) == len(expected)
    assert label_files(shared) == expected
    assert label_shard(trainer(data, teachers, tmp_path / "run", unlabeled_dir=unlabeled, teacher_cache=shared),
                       Shard(1, 2)).labelled == 0  # a rerun finds its labels on disk

    teacher_images = sum(count_teacher_images)
    result = trainer(data, teachers, tmp_path / "run", unlabeled_dir=unlabeled, teacher_cache=shared,
                     training=training(epochs=1)).run()
    assert result.teacher_calls == 0 and sum(count_teacher_images) == teacher_images
    assert result.pseudo_labelled_images == 3 and result.best_path.is_file()
    assert not (tmp_path / "run" / "teacher_cache").exists()


def test_the_prefect_task_labels_a_shard_that_train_student_then_reads(tmp_path: Path) -> None:
    from tasks.label import label_teacher_shard_task

    data = prepared(tmp_path, "detection_only", num_images=4)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    cache = tmp_path / "cache"
    labelled = label_teacher_shard_task.fn(str(data / "train.json"), str(data / "val.json"), str(teachers),
                                           str(cache), shard=0, shards=1, device="cpu")
    assert labelled.labelled == labelled.images > 0 and labelled.cache_dir == cache
    result = train_student(data / "train.json", data / "val.json", tmp_path / "student", teachers=teachers,
                           epochs=1, imgsz=IMGSZ, batch_size=2, device="cpu", progress=False, teacher_cache=cache)
    assert result.teacher_calls == 0
    bad = label_teacher_shard_task.fn(str(data / "train.json"), str(data / "val.json"), str(teachers), str(cache),
                                      shard=2, shards=2, device="cpu")
    assert bad.is_failed() and "shard index 2 of 2" in bad.message
