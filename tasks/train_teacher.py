"""Teacher training as a Prefect task: a thin wrapper over `mlcore.finetune.setup.train_teachers`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.finetune.records import TeacherTrainingResult
from mlcore.finetune.setup import teacher_base_identities, train_teachers
from tasks.policy import (current_stage_key, prepare_stage_dir, release_accelerator_memory, retry_transient,
                          stage_cache_key)

TIMEOUT_SECONDS = 24 * 3600


def teachers_folder(teachers: str | Path | TeacherTrainingResult | None) -> Path | None:
    """Where the teachers are: later stages get this stage's record in the pipeline (so new teachers change their
    cache keys), or a folder when called on their own."""
    if teachers is None:
        return None
    return teachers.output_dir if isinstance(teachers, TeacherTrainingResult) else Path(teachers)


def _markdown(result: TeacherTrainingResult) -> str:
    """The teacher-training artifact: a table that fits the run's page, the paths in a list below it."""
    lines = [f"## Teacher training ({result.mode}, {result.device})", "",
             "| teacher | preset | best | epoch | trainable |", "|---|---|---|---|---|"]
    for family, run in result.runs.items():
        best = f"{run.best_metric} {run.best:.4f}" if run.best is not None else "-"
        lines.append(f"| {family} | {run.preset} | {best} | {run.best_epoch} | {run.lora['ratio']:.3%} |")
    lines += [""] + [f"- {family} adapter: `{run.adapter_dir}`" for family, run in result.runs.items()]
    lines.append(f"- metrics: `{result.metrics_path}`")
    return "\n".join(lines)


def base_weights(parameters: dict[str, Any]) -> dict[str, Any]:
    """The teachers' base weights (revision and sha256) the parameters resolve to: new weights in the models folder
    train again instead of returning the old teachers."""
    return {"base_weights": teacher_base_identities(parameters.get("config_files") or [],
                                                    preset=parameters.get("preset"))}


teacher_stage_key = stage_cache_key("data", "val", "config_files", extra=base_weights)


# Cached on the split files' content, the settings, the base weights and the code version. A transient failure is
# retried and continues from the run's own checkpoints (the stage folder's marker says they were written with the
# same settings). Bad input (MlcoreError) is the user's to fix and ends as a Failed state without retrying.
@task(name="train-teacher", retries=2, retry_delay_seconds=30, retry_condition_fn=retry_transient,
      cache_key_fn=teacher_stage_key, persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def train_teacher_task(
    data: str,
    val: str,
    output: str,
    auto_detect: bool = False,
    preset: str | None = None,
    device: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    config_files: list[str] | None = None,
    resume: bool = False,
    images: str | None = None,
    val_images: str | None = None,
) -> TeacherTrainingResult | State:
    """images / val_images: the image folders of DATA and VAL (default: where validate recorded them)."""
    try:
        resume = prepare_stage_dir(output, current_stage_key()) or resume
        result = train_teachers(data, val, output, auto_detect=auto_detect, images=images, val_images=val_images,
                                preset=preset, device=device,
                                epochs=epochs, batch_size=batch_size, config_files=config_files or [],
                                resume=resume, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    create_markdown_artifact(_markdown(result), key="teacher-training", description=f"Teachers trained on {data}")
    return result
