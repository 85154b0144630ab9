"""Each pipeline task: its retry rule (transient retried, user errors not), its result cache, its user errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mlcore.errors import DatasetError
from tasks.benchmark import benchmark_models_task
from tasks.evaluate import evaluate_model_task, evaluate_teachers_task, predict_shard_task, score_shards_task
from tasks.export import export_model_task
from tasks.label import label_teacher_shard_task
from tasks.policy import results_storage, retry_transient
from tasks.report import report_task
from tasks.train_student import train_student_task
from tasks.train_teacher import train_teacher_task

# (task, the mlcore call it wraps, as named in its module, positional arguments for .fn)
WRAPPED = [
    (train_teacher_task, "tasks.train_teacher.train_teachers", ("train.json", "val.json", "out")),
    (train_student_task, "tasks.train_student.train_student", ("train.json", "val.json", "teachers", "out")),
    (export_model_task, "tasks.export.optimize_model", ("best.pt", "out")),
    (evaluate_model_task, "tasks.evaluate.evaluate_target", ("best.pt", "test.json", "out")),
    (evaluate_teachers_task, "tasks.evaluate.evaluate_target", ("teachers", "test.json", "out")),
    (benchmark_models_task, "tasks.benchmark.CocoDataset", (["best.pt"], "test.json", "out")),
    (label_teacher_shard_task, "tasks.label.label_teacher_shard", ("train.json", "val.json", "teachers", "cache")),
    (predict_shard_task, "tasks.evaluate.predict_target_shard", ("test.json", "out")),
    (score_shards_task, "tasks.evaluate.evaluate_shards", ("test.json", ["a.json"], "out")),
]
IDS = [entry[0].name for entry in WRAPPED]


@pytest.mark.parametrize("task", [entry[0] for entry in WRAPPED] + [report_task],
                         ids=IDS + [report_task.name])
def test_every_stage_retries_transient_failures_only_and_has_a_timeout(task) -> None:
    assert task.retries >= 1
    assert task.retry_condition_fn is retry_transient
    assert task.timeout_seconds


@pytest.mark.parametrize("task", [entry[0] for entry in WRAPPED], ids=IDS)
def test_every_stage_but_the_report_is_cached_by_the_stage_key(task) -> None:
    assert task.cache_key_fn is not None and task.cache_key_fn.__name__.startswith("stage_cache_key")
    assert task.persist_result


@pytest.mark.parametrize(("task", "wrapped", "args"), WRAPPED, ids=IDS)
def test_a_user_error_ends_as_a_failed_state_with_its_message(task, wrapped, args, monkeypatch, tmp_path) -> None:
    def bad_input(*_args, **_kwargs):
        raise DatasetError("no usable annotation", where="annotations", fix="annotate the images")

    monkeypatch.setattr(wrapped, bad_input)
    monkeypatch.chdir(tmp_path)
    state = task.fn(*args)
    assert state.is_failed() and "annotations: no usable annotation" in state.message
    assert not retry_transient(task, None, state)


@pytest.mark.parametrize(("task", "wrapped", "args"), WRAPPED, ids=IDS)
def test_a_transient_failure_is_raised_for_prefect_to_retry(task, wrapped, args, monkeypatch, tmp_path) -> None:
    def flaky(*_args, **_kwargs):
        raise ConnectionError("storage endpoint went away")

    monkeypatch.setattr(wrapped, flaky)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConnectionError):
        task.fn(*args)


# --- real task runs --------------------------------------------------------------------------------------------

class FakeEvaluation:
    """What evaluate_target returns, as far as the evaluate task reads it; counts its calls."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.calls = 0
        self.failures = list(failures or [])

    def __call__(self, data, **options):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return SimpleNamespace(metrics=lambda: {"map50_95": 0.5, "map50": 0.7}, num_images=3, seconds=0.1), {}


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    model, data = tmp_path / "best.pt", tmp_path / "test.json"
    model.write_bytes(b"weights")
    data.write_text('{"images": []}')
    return model, data


def _evaluate(tmp_path: Path, model: Path, data: Path) -> SimpleNamespace:
    """The task's final state (name, message, result) from a one-task flow run."""
    from prefect import flow

    task = evaluate_model_task.with_options(retry_delay_seconds=0, result_storage=results_storage(tmp_path / "run"))

    @flow
    def one_stage() -> SimpleNamespace:
        state = task(str(model), str(data), str(tmp_path / "run" / "evaluation"), return_state=True)
        return SimpleNamespace(name=state.name, message=state.message, failed=state.is_failed(),
                               result=None if state.is_failed() else state.result())

    return one_stage()


def test_prefect_retries_a_transient_failure(prefect_harness, tmp_path, monkeypatch) -> None:
    fake = FakeEvaluation([OSError("NFS hiccup")])
    monkeypatch.setattr("tasks.evaluate.evaluate_target", fake)
    state = _evaluate(tmp_path, *_inputs(tmp_path))
    assert state.name == "Completed" and fake.calls == 2
    assert state.result.metrics["map50_95"] == 0.5


def test_prefect_does_not_retry_a_user_error(prefect_harness, tmp_path, monkeypatch) -> None:
    fake = FakeEvaluation([DatasetError("test.json has no images", where=str(tmp_path / "test.json"))])
    monkeypatch.setattr("tasks.evaluate.evaluate_target", fake)
    state = _evaluate(tmp_path, *_inputs(tmp_path))
    assert state.failed and fake.calls == 1 and "has no images" in state.message


def test_a_rerun_hits_the_cache_until_the_data_or_the_code_changes(prefect_harness, tmp_path, monkeypatch) -> None:
    fake = FakeEvaluation()
    monkeypatch.setattr("tasks.evaluate.evaluate_target", fake)
    model, data = _inputs(tmp_path)
    first = _evaluate(tmp_path, model, data)
    second = _evaluate(tmp_path, model, data)
    assert first.name == "Completed" and second.name == "Cached" and fake.calls == 1
    assert second.result.metrics == first.result.metrics
    assert (tmp_path / "run" / ".cache" / "results").is_dir()  # kept in the run folder

    data.write_text('{"images": [], "annotations": []}')
    assert _evaluate(tmp_path, model, data).name == "Completed" and fake.calls == 2

    monkeypatch.setattr("tasks.policy.code_version", lambda: "9.9.9+other")
    assert _evaluate(tmp_path, model, data).name == "Completed" and fake.calls == 3
