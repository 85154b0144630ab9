"""Shards on a real Dask cluster: a flow maps labelling and evaluation over two worker processes (LocalCluster) of a
DaskTaskRunner, recorded on the test Prefect server; the results equal one worker's."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from prefect import flow

from flows.shards import evaluate_in_shards, label_in_shards, with_task_runner

SHARDS = 2


@flow(name="shards-on-dask")
def sharded_stages(data: str, val: str, teachers: str, cache: str, evaluation: str) -> dict[str, Any]:
    """What the pipeline does with --shards 2: label in shards, then evaluate the teachers in shards; and a model
    that does not exist, whose shards fail."""
    labelled = label_in_shards(SHARDS, data, val, teachers, cache, device="cpu")
    scored = evaluate_in_shards(SHARDS, val, evaluation, teachers=teachers, device="cpu", return_state=True)
    broken = evaluate_in_shards(SHARDS, val, evaluation + "-broken", model=evaluation + "/missing.pt", device="cpu",
                                return_state=True)
    return {"labelled": labelled, "scored": (scored.name, scored.result()), "broken": (broken.name, broken.message)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A prepared demo split (boxes and masks, 6 + 6 images) and untrained tiny teachers for its mode."""
    from mlcore.data.demo import make_demo_dataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.data.prepare import prepare_dataset
    from mlcore.teachers.untrained import save_untrained_teachers

    root = tmp_path_factory.mktemp("shards")
    source = make_demo_dataset(root / "demo", mode="both", num_images=12, negatives=0, image_size=(160, 128), seed=3)
    report = prepare_dataset(source, output_dir=root / "prepared", split="train:0.5,val:0.5", progress=False)
    assert report.usable
    prepared = root / "prepared"
    teachers = save_untrained_teachers(root / "teachers", ModeConfig.read(prepared / ".mode_config.json"))
    return {"root": root, "train": prepared / "train.json", "val": prepared / "val.json", "teachers": teachers}


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as local:
        yield local


def test_labelling_and_evaluation_shards_run_on_two_dask_workers_and_match_one_worker(
        prefect_server, dataset: dict[str, Path], cluster, tmp_path: Path) -> None:
    from mlcore.distill.setup import label_teacher_shard
    from mlcore.evaluation.commands import evaluate_target

    data, val, teachers = (str(dataset[name]) for name in ("train", "val", "teachers"))
    cache, evaluation = tmp_path / "teacher_cache", tmp_path / "evaluation"
    on_dask = with_task_runner(sharded_stages, cluster.scheduler_address)
    state = on_dask(data, val, teachers, str(cache), str(evaluation), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()

    labelled = result["labelled"]
    assert [shard.index for shard in labelled] == [0, 1] and all(shard.labelled > 0 for shard in labelled)
    label_workers = {shard.worker for shard in labelled}
    assert len(label_workers) == SHARDS and f"{socket.gethostname()}:{os.getpid()}" not in label_workers
    # one worker labelling everything writes the same files
    alone = label_teacher_shard(data, val, teachers=teachers, teacher_cache=tmp_path / "alone", shard=0, shards=1,
                                device="cpu", progress=False)
    assert alone.labelled == sum(shard.labelled for shard in labelled)
    assert {p.name for p in cache.glob("*.npz")} == {p.name for p in (tmp_path / "alone").glob("*.npz")}

    shard_files = sorted((evaluation / "shards").glob("*.json"))
    assert len(shard_files) == SHARDS
    predicted = [json.loads(path.read_text()) for path in shard_files]
    assert all(shard["image_ids"] for shard in predicted)  # 6 images, batches of 4: one batch each
    assert len({shard["worker"] for shard in predicted}) == SHARDS
    # One worker evaluating everything, with one thread as Dask's workers have (distributed sets OMP_NUM_THREADS=1),
    # so that torch sums in the same order and the predictions can be compared bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole, files = evaluate_target(val, teachers=teachers, output=tmp_path / "whole", device="cpu",
                                       progress=False)
    finally:
        torch.set_num_threads(threads)
    status, scores = result["scored"]
    assert status == "Completed" and scores.kind == "teachers"
    assert scores.metrics == whole.metrics() and scores.num_images == whole.num_images == 6

    def without_time(path: Path) -> dict[str, Any]:
        return {key: value for key, value in json.loads(path.read_text()).items() if key != "seconds"}

    assert without_time(evaluation / "metrics.json") == without_time(files["metrics"])
    assert (evaluation / "predictions.json").read_bytes() == files["predictions"].read_bytes()
    status, message = result["broken"]
    assert status == "Failed" and "predict-shard: shard 1 of 2 ended Failed" in message and "missing.pt" in message


def test_a_dask_address_without_a_prefect_server_is_one_clear_error() -> None:
    """Each Dask worker would otherwise start a private embedded server and fail after a minute."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlcore.errors import ConfigError

    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(ConfigError, match="PREFECT_API_URL"):
        with_task_runner(sharded_stages, "tcp://127.0.0.1:8786")
    assert with_task_runner(sharded_stages, None) is sharded_stages
