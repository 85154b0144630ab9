"""Teacher training as a Prefect task: a thin wrapper over `mlcore.training.teacher_setup.train_teachers`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.training.teacher_setup import train_teachers
from mlcore.training.teacher_trainer import TeacherTrainingResult


def _markdown(result: TeacherTrainingResult) -> str:
    lines = [f"## Teacher training ({result.mode}, {result.device})", "",
             "| teacher | preset | best | epoch | trainable | adapter |", "|---|---|---|---|---|---|"]
    for family, run in result.runs.items():
        best = f"{run.best_metric} {run.best:.4f}" if run.best is not None else "-"
        lines.append(f"| {family} | {run.preset} | {best} | {run.best_epoch} | {run.lora['ratio']:.3%} | "
                     f"`{run.adapter_dir}` |")
    lines += ["", f"metrics: `{result.metrics_path}`"]
    return "\n".join(lines)


# Training resumes from its own checkpoints (resume=True), so a retry is cheap; no result caching: the outputs live
# in the run folder. Bad input (MlcoreError) is the user's to fix and ends as a Failed state without retrying.
@task(name="train-teacher", retries=0, cache_policy=NONE)
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
) -> TeacherTrainingResult | State:
    try:
        result = train_teachers(data, val, output, auto_detect=auto_detect, preset=preset, device=device,
                                epochs=epochs, batch_size=batch_size, config_files=config_files or [],
                                resume=resume, progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    create_markdown_artifact(_markdown(result), key="teacher-training", description=f"Teachers trained on {data}")
    return result
