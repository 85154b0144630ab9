"""Distillation as a Prefect task: a thin wrapper over `mlcore.training.student_setup.train_student`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.training.distillation import DistillationResult
from mlcore.training.student_setup import train_student


def _markdown(result: DistillationResult) -> str:
    best = f"{result.best:.4f}" if result.best is not None else "-"
    return "\n".join([
        f"## Student distillation ({result.mode})", "",
        "| student | best metric | value | epoch | teacher-labelled images | without annotations |",
        "|---|---|---|---|---|---|",
        f"| {result.student} | {result.best_metric} | {best} | {result.best_epoch} | {result.teacher_calls} | "
        f"{result.pseudo_labelled_images} |", "",
        f"weights: `{result.best_path}`, summary: `{result.output_dir / 'student.json'}`"])


# Like the teacher task: resumable from its own checkpoints and teacher cache, so no result caching and no retries of
# user errors (MlcoreError ends as a Failed state with its message).
@task(name="train-student", retries=0, cache_policy=NONE)
def train_student_task(
    data: str,
    val: str,
    teachers: str,
    output: str,
    student: str | None = None,
    unlabeled: str | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    config_files: list[str] | None = None,
    resume: bool = False,
) -> DistillationResult | State:
    try:
        result = train_student(data, val, output, teachers=teachers, student=student, unlabeled=unlabeled,
                               epochs=epochs, imgsz=imgsz, batch_size=batch_size, device=device,
                               config_files=config_files or [], resume=resume, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    create_markdown_artifact(_markdown(result), key="student-distillation", description=f"Student trained on {data}")
    return result
