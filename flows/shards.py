"""Stages mapped over image shards, so several workers share them: teacher labelling and evaluation.

    flow = with_task_runner(training_pipeline, "tcp://scheduler:8786")   # shards become tasks on that Dask cluster
    label_in_shards(4, "train.json", "val.json", teachers, "run/teacher_cache")     # then distil with that cache
    scores = evaluate_in_shards(4, "test.json", "run/evaluation/best.pt", model="run/student/best.pt")

Called inside a flow. With the flow's default task runner the shards run in threads of the flow's own process; with
a DaskTaskRunner (`with_task_runner`), each shard is a task on a worker of that cluster, one worker per GPU (see
docs/SCALING.md). Every worker writes into the run folder, so each must see it at the same path (shared storage).

Each function waits for its shards and returns what the stage's single-worker task returns; with return_state=True
it returns a State instead (Failed with the first failing shard's message, "Cached" when every part was), as a task
called with return_state=True does, so a flow can record it like any other stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Flow, unmapped
from prefect.futures import PrefectFutureList
from prefect.settings import get_current_settings
from prefect.states import Completed, Failed, State

from mlcore.distill.labelling import LabelledShard
from mlcore.errors import ConfigError
from mlcore.finetune.records import TeacherTrainingResult
from mlcore.reporting import ModelScores
from tasks.evaluate import predict_shard_task, score_shards_task
from tasks.label import label_teacher_shard_task


class ShardFailed(Exception):
    """A shard of a mapped stage ended Failed (raised when return_state is False)."""


def with_task_runner(flow: Flow, dask_address: str | None) -> Flow:
    """FLOW with its submitted and mapped tasks sent to the Dask cluster whose scheduler is at DASK_ADDRESS
    (tcp://host:8786); FLOW itself when no address is given.

    The workers record their task runs on the flow's Prefect server (its address travels with each task), so there
    must be one: with the embedded per-process server each worker would start its own and fail."""
    if not dask_address:
        return flow
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("running shards on a Dask cluster needs prefect-dask, which is not installed",
                          where="--dask-address", fix="pip install 'mlcore[cluster]' (or drop --dask-address)"
                          ) from None
    if not get_current_settings().api.url:
        raise ConfigError("the Dask workers need a Prefect server to report to, and PREFECT_API_URL is not set",
                          where="--dask-address", fix="start one (prefect server start --host 0.0.0.0) and export "
                          "PREFECT_API_URL=http://<its host>:4200/api, an address the workers reach (docs/SCALING.md)")
    return flow.with_options(task_runner=DaskTaskRunner(address=dask_address))


def label_in_shards(shards: int, data: str, val: str, teachers: str | TeacherTrainingResult, cache: str, *,
                    unlabeled: str | None = None, device: str | None = None, config_files: list[str] | None = None,
                    images: str | None = None, val_images: str | None = None,
                    result_storage: Path | None = None, return_state: bool = False
                    ) -> list[LabelledShard] | State:
    """Distillation's teacher labelling split into SHARDS tasks writing into CACHE; then distil with
    teacher_cache=CACHE and the same data, image folders, unlabeled images and configs, and no teacher call is
    left."""
    _check(shards)
    task = _stored(label_teacher_shard_task, result_storage)
    futures = task.map(data=unmapped(data), val=unmapped(val), teachers=unmapped(teachers), cache=unmapped(cache),
                       shard=range(shards), shards=unmapped(shards), unlabeled=unmapped(unlabeled),
                       device=unmapped(device), config_files=unmapped(config_files), images=unmapped(images),
                       val_images=unmapped(val_images))
    return _gathered(futures, "label-teacher-shard", return_state)


def evaluate_in_shards(shards: int, data: str, output: str, *, model: str | None = None,
                       teachers: str | TeacherTrainingResult | None = None, device: str = "auto",
                       images: str | None = None, result_storage: Path | None = None, return_state: bool = False
                       ) -> ModelScores | State:
    """What evaluate_model_task (MODEL) or evaluate_teachers_task (TEACHERS) returns and writes into OUTPUT, with the
    predictions made in SHARDS tasks and scored once, here. images: DATA's image folder."""
    _check(shards)
    task = _stored(predict_shard_task, result_storage)
    futures = task.map(data=unmapped(data), output=unmapped(output), shard=range(shards), shards=unmapped(shards),
                       model=unmapped(model), teachers=unmapped(teachers), device=unmapped(device),
                       images=unmapped(images))
    predicted = _gathered(futures, "predict-shard", return_state=True)
    if predicted.is_failed():
        return _failed(predicted.message or "predict-shard failed", return_state)
    files = [str(part.path) for part in predicted.result()]
    scored = _stored(score_shards_task, result_storage)(data, files, output, model=model, teachers=teachers,
                                                        return_state=True)
    if scored.is_failed():
        return _failed(f"score-shards: {scored.message}", return_state)
    if not return_state:
        return scored.result()
    cached = predicted.name == "Cached" and scored.name == "Cached"
    return Completed(data=scored.result(), name="Cached" if cached else "Completed")


def _check(shards: int) -> None:
    if shards < 1:
        raise ConfigError(f"{shards} shards", where="shards", fix="pass 1 or more")


def _stored(task: Any, result_storage: Path | None) -> Any:
    return task if result_storage is None else task.with_options(result_storage=result_storage)


def _gathered(futures: PrefectFutureList, stage: str, return_state: bool) -> list[Any] | State:
    """Every shard's result, in shard order, once all finished; the first failure's message otherwise."""
    futures.wait()
    states = [future.state for future in futures]
    for index, state in enumerate(states):
        if not state.is_completed():
            return _failed(f"{stage}: shard {index + 1} of {len(states)} ended {state.name}: {state.message}",
                           return_state)
    results = [future.result() for future in futures]
    if not return_state:
        return results
    return Completed(data=results, name="Cached" if all(state.name == "Cached" for state in states) else "Completed")


def _failed(message: str, return_state: bool) -> State:
    if return_state:
        return Failed(message=message)
    raise ShardFailed(message)
