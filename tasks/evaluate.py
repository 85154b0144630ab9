"""Scoring a model or the teachers on a labelled split as Prefect tasks: thin wrappers over `mlcore.evaluation`.
`images`: the split's image folder (default: where validate recorded it, else found beside the JSON).

In shards (flows/shards.py maps them): `predict_shard_task` on each worker writes its part of the split's predictions
into OUTPUT/shards/, then `score_shards_task` merges them and scores once (mAP is not additive over images), writing
the same metrics.json, PR curves and predictions.json as `evaluate_model_task` / `evaluate_teachers_task`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.evaluation.commands import evaluate_shards, evaluate_target, model_format, predict_target_shard
from mlcore.evaluation.evaluate import EvaluationResult
from mlcore.evaluation.shards import Shard, ShardFile, shard_file_name
from mlcore.finetune.records import TeacherTrainingResult
from mlcore.reporting import ModelScores
from tasks.policy import release_accelerator_memory, retry_transient, stage_cache_key
from tasks.train_teacher import teachers_folder

TIMEOUT_SECONDS = 4 * 3600


# Cached on the model file's and the split's content; writes metrics.json, PR curves and predictions into OUTPUT.
@task(name="evaluate-model", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("model", "data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def evaluate_model_task(model: str, data: str, output: str, device: str = "auto", images: str | None = None
                        ) -> ModelScores | State:
    try:
        result, _ = evaluate_target(data, model=model, images=images, output=output, device=device, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    return _scores(result, output, model=model)


# The teachers run with the class names as prompts; `teachers` is their stage's record (or a folder).
@task(name="evaluate-teachers", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def evaluate_teachers_task(teachers: str | TeacherTrainingResult, data: str, output: str,
                           device: str = "auto", images: str | None = None) -> ModelScores | State:
    folder = teachers_folder(teachers)
    try:
        result, _ = evaluate_target(data, teachers=folder, images=images, output=output, device=device,
                                    progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    return _scores(result, output, teachers=folder)


# One worker's part of the evaluation of the model (or the teachers: their stage's record, or a folder); cached on
# the model file's and the split's content and the shard.
@task(name="predict-shard", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("model", "data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def predict_shard_task(data: str, output: str, shard: int = 0, shards: int = 1, model: str | None = None,
                       teachers: str | TeacherTrainingResult | None = None, device: str = "auto",
                       images: str | None = None) -> ShardFile | State:
    folder = teachers_folder(teachers)
    try:
        part = Shard(shard, shards)
        return predict_target_shard(data, part, Path(output) / "shards" / shard_file_name(part), model=model,
                                    teachers=folder, images=images, device=device, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()


# The merge of every shard's predictions, scored once; cached on the split's and the shard files' content.
@task(name="score-shards", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("data", "shard_files"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def score_shards_task(data: str, shard_files: list[str], output: str, model: str | None = None,
                      teachers: str | TeacherTrainingResult | None = None) -> ModelScores | State:
    try:
        result, _ = evaluate_shards(data, shard_files, output=output)
    except MlcoreError as error:
        return Failed(message=str(error))
    return _scores(result, output, model=model, teachers=teachers_folder(teachers))


def _scores(result: EvaluationResult, output: str, *, model: str | None = None, teachers: Path | None = None
            ) -> ModelScores:
    """One row of the pipeline's comparison: the teachers' scores when TEACHERS is given, else MODEL's."""
    if teachers is not None:
        name, kind, path = "teachers", "teachers", str(teachers)
    else:
        name, kind, path = Path(str(model)).name, model_format(str(model)), str(model)
    return ModelScores(name=name, kind=kind, path=path, metrics=result.metrics(), num_images=result.num_images,
                       output_dir=output, seconds=result.seconds)
