"""Scoring a model or the teachers on a labelled split as Prefect tasks: thin wrappers over `mlcore.evaluation`."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.evaluation.commands import evaluate_target, model_format
from mlcore.reporting import ModelScores
from mlcore.training.teacher_trainer import TeacherTrainingResult
from tasks.policy import release_accelerator_memory, retry_transient, stage_cache_key

TIMEOUT_SECONDS = 4 * 3600


# Cached on the model file's and the split's content; writes metrics.json, PR curves and predictions into OUTPUT.
@task(name="evaluate-model", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("model", "data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def evaluate_model_task(model: str, data: str, output: str, device: str = "auto") -> ModelScores | State:
    try:
        result, _ = evaluate_target(data, model=model, output=output, device=device, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    return ModelScores(name=Path(model).name, kind=model_format(model), path=str(model), metrics=result.metrics(),
                       num_images=result.num_images, output_dir=output, seconds=result.seconds)


# The teachers run with the class names as prompts; `teachers` is their stage's record (or a folder).
@task(name="evaluate-teachers", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def evaluate_teachers_task(teachers: str | TeacherTrainingResult, data: str, output: str,
                           device: str = "auto") -> ModelScores | State:
    folder = teachers.output_dir if isinstance(teachers, TeacherTrainingResult) else Path(teachers)
    try:
        result, _ = evaluate_target(data, teachers=folder, output=output, device=device, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    return ModelScores(name="teachers", kind="teachers", path=str(folder), metrics=result.metrics(),
                       num_images=result.num_images, output_dir=output, seconds=result.seconds)
