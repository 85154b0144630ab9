"""Distillation as a Prefect task: a thin wrapper over `mlcore.distill.setup.train_student`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from mlcore.distill.records import DistillationResult
from mlcore.distill.setup import train_student
from mlcore.errors import MlcoreError
from mlcore.finetune.records import TeacherTrainingResult
from tasks.policy import (current_stage_key, prepare_stage_dir, release_accelerator_memory, retry_transient,
                          stage_cache_key)
from tasks.train_teacher import teachers_folder

TIMEOUT_SECONDS = 24 * 3600


def _markdown(result: DistillationResult) -> str:
    best = f"{result.best:.4f}" if result.best is not None else "-"
    return "\n".join([
        f"## Student distillation ({result.mode})", "",
        "| student | best metric | value | epoch | teacher-labelled images | without annotations |",
        "|---|---|---|---|---|---|",
        f"| {result.student} | {result.best_metric} | {best} | {result.best_epoch} | {result.teacher_calls} | "
        f"{result.pseudo_labelled_images} |", "",
        f"weights: `{result.best_path}`, summary: `{result.output_dir / 'student.json'}`"])


# Like the teacher task: cached on the data, the teachers' record and the settings; retried (resuming from its own
# checkpoints and teacher-label cache) only on transient failures; user errors end as a Failed state.
# `teachers` is the teacher stage's record in the pipeline (so new teachers mean a new student), or a folder.
# `teacher_cache`: the teacher-label folder the labelling shards filled (tasks/label.py); then no teacher call is left.
# `devices`: several GPUs of the worker's machine train together, "0,1" or a count (mlcore train-student --gpus).
@task(name="train-student", retries=2, retry_delay_seconds=30, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("data", "val", "config_files"), persist_result=True,
      timeout_seconds=TIMEOUT_SECONDS)
def train_student_task(
    data: str,
    val: str,
    teachers: str | TeacherTrainingResult,
    output: str,
    student: str | None = None,
    unlabeled: str | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    config_files: list[str] | None = None,
    resume: bool = False,
    teacher_cache: str | None = None,
    devices: int | str | None = None,
    images: str | None = None,
    val_images: str | None = None,
) -> DistillationResult | State:
    """images / val_images: the image folders of DATA and VAL (default: where validate recorded them)."""
    teachers_dir = teachers_folder(teachers)
    try:
        resume = prepare_stage_dir(output, current_stage_key()) or resume
        result = train_student(data, val, output, teachers=teachers_dir, images=images, val_images=val_images,
                               student=student, unlabeled=unlabeled,
                               epochs=epochs, imgsz=imgsz, batch_size=batch_size, device=device,
                               config_files=config_files or [], resume=resume, progress=False,
                               teacher_cache=teacher_cache, devices=devices)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    create_markdown_artifact(_markdown(result), key="student-distillation", description=f"Student trained on {data}")
    return result
