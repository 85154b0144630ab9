"""The pipeline's GPU stages as flows of their own, so a pipeline running on a CPU pool can send them to the GPU pool.

Work pools place flow runs, not tasks: `train-teachers` and `distill` are deployed (prefect.yaml, work pool
mlcore-gpu) from the two flows below, each running the pipeline's task with the same arguments and the same cache.
`run_gpu_stage` runs a stage either in the caller's process (the task itself) or as its deployment, through
`run_deployment(..., as_subflow=True)`, and gives back the stage's final state either way.

How the result comes back: the stage task persists its result in the run folder (`<run>/.cache/results`, under an
absolute path), and the stage flow ends in a state that points at that file, so the parent's `state.result()` reads
it from there. The run folder must therefore be on storage both machines see, at the same path (the records hold
absolute paths too: adapters, weights).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, flow
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Failed, State

from mlcore.distill.records import DistillationResult
from mlcore.finetune.records import TeacherRun, TeacherTrainingResult
from tasks.policy import results_storage
from tasks.train_student import train_student_task
from tasks.train_teacher import train_teacher_task

POLL_SECONDS = 5.0  # how often the parent asks how its child run is doing


def _cached(task: Task, output: str) -> Task:
    """The task with its results kept in the run folder that holds OUTPUT, as the pipeline keeps them."""
    return task.with_options(result_storage=results_storage(Path(output).parent))


def _flow_state(state: State) -> State:
    """The task's end as the stage flow's end: its message when it failed, else a state whose data is the task's
    persisted result record (so the record, not a copy in the worker's own storage, is what the parent reads)."""
    if not state.is_completed():
        return Failed(message=state.message)
    return Completed(name=state.name, message=state.message, data=state.data)


@flow(name="train-teachers", log_prints=True)
def train_teachers_stage(data: str, val: str, output: str, preset: str | None = None, device: str | None = None,
                         epochs: int | None = None, images: str | None = None, val_images: str | None = None
                         ) -> TeacherTrainingResult | State:
    """Train the teachers the data's mode needs into OUTPUT (the pipeline's train-teachers stage).

    Args:
        data: training split (COCO JSON, validated).
        val: validation split.
        output: the stage folder, inside the run folder (cached results go to <run folder>/.cache/results).
        preset: teacher preset (tiny for CPU smoke runs); empty: the teacher configs' presets.
        device: cpu, cuda or cuda:N; empty: the first GPU when there is one.
        epochs: epochs for each teacher; empty: the teacher configs' value.
        images: image folder of DATA (and of VAL when VAL_IMAGES is empty); empty: the folder validate recorded.
        val_images: image folder of VAL; empty: IMAGES.
    """
    task = _cached(train_teacher_task, output)
    return _flow_state(task(data, val, output, preset=preset, device=device, epochs=epochs, images=images,
                            val_images=val_images, return_state=True))


@flow(name="distill", log_prints=True)
def distill_stage(data: str, val: str, teachers: str | dict[str, Any], output: str,
                  student: str | None = None, epochs: int | None = None, imgsz: int | None = None,
                  device: str | None = None, teacher_cache: str | None = None, devices: str | None = None,
                  images: str | None = None, val_images: str | None = None,
                  unlabeled: str | None = None) -> DistillationResult | State:
    """Distil the teachers into a student in OUTPUT (the pipeline's distill stage).

    Args:
        data: training split (COCO JSON, validated).
        val: validation split.
        teachers: the train-teachers stage's result, as JSON (new teachers mean a new student), or a teachers folder.
        output: the stage folder, inside the run folder (cached results go to <run folder>/.cache/results).
        student: yolov8n..x, yolov8n-seg..x-seg, fastsam-s/x, each also with -relu (yolov8n-relu: ReLU in place of
            SiLU, faster in int8); empty: the mode's recommendation.
        epochs: distillation epochs; empty: the student config's value.
        imgsz: student input size; empty: the student config's value.
        device: cpu, cuda or cuda:N; empty: the first GPU when there is one.
        teacher_cache: the teacher-label folder labelling shards filled (flows/shards.py); empty: the teachers label.
        devices: GPUs of the worker's machine that distil together (DDP), e.g. 0,1; empty: DEVICE alone.
        images: image folder of DATA (and of VAL when VAL_IMAGES is empty); empty: the folder validate recorded.
        val_images: image folder of VAL; empty: IMAGES.
        unlabeled: folder of images without annotations that the teachers label for the student; empty: none.
    """
    task = _cached(train_student_task, output)
    return _flow_state(task(data, val, _teachers_record(teachers), output, student=student, epochs=epochs,
                            imgsz=imgsz, device=device, teacher_cache=teacher_cache, devices=devices,
                            images=images, val_images=val_images, unlabeled=unlabeled, return_state=True))


def _teachers_record(teachers: str | dict[str, Any]) -> str | TeacherTrainingResult:
    """The teachers' record as the parent had it, from the JSON the deployment run carried. Values keep their JSON
    types: validating into the dataclass would turn an int epoch into a float, and so change the student's cache key
    (a pipeline switched to deployments would train its student again)."""
    if isinstance(teachers, str):
        return teachers
    runs = {family: TeacherRun(**{**run, "adapter_dir": Path(run["adapter_dir"]),
                                  "baseline_per_class": {int(k): v for k, v in run["baseline_per_class"].items()}})
            for family, run in teachers["runs"].items()}
    return TeacherTrainingResult(Path(teachers["output_dir"]), teachers["mode"], teachers["device"], runs)


STAGES: dict[str, tuple[Task, Any]] = {"train-teachers": (train_teacher_task, train_teachers_stage),
                                       "distill": (train_student_task, distill_stage)}


def run_gpu_stage(name: str, parameters: dict[str, Any], *, via_deployment: bool,
                  poll_seconds: float = POLL_SECONDS) -> State:
    """Run stage NAME (train-teachers or distill) with PARAMETERS (its flow's parameters); its final state.

    In-process: the stage's task, here. Via deployment: a run of the deployment `NAME/NAME` (on the GPU pool), linked
    as a subflow of the calling flow, awaited however long it takes. Either way a completed state's `result()` is the
    stage's record and its name says whether it was "Cached"; a failed child gives a Failed state with its message.
    """
    task, stage_flow = STAGES[name]
    if not via_deployment:
        return _cached(task, parameters["output"])(**parameters, return_state=True)
    deployment = f"{stage_flow.name}/{name}"
    try:
        child = run_deployment(deployment, parameters=parameters, timeout=None, poll_interval=poll_seconds,
                               as_subflow=True)
    except ObjectNotFound:
        return Failed(message=f"deployment {deployment} not found: deploy it (prefect --no-prompt deploy --all) "
                              "and start a worker on its work pool (mlcore-gpu)")
    state = child.state
    if state is None or not state.is_completed():
        message = state.message if state is not None else "no state"
        return Failed(message=f"{message} (flow run {child.name} of {deployment})")
    return state


def gpu_stage(name: str, *, via_deployment: bool, poll_seconds: float = POLL_SECONDS) -> Callable[..., Any]:
    """Stage NAME as a callable with its task's calling convention (positional arguments, `return_state=`), so the
    pipeline can run it where it runs a task."""
    signature = inspect.signature(STAGES[name][1].fn)

    def call(*args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        parameters = dict(signature.bind(*args, **kwargs).arguments)
        state = run_gpu_stage(name, parameters, via_deployment=via_deployment, poll_seconds=poll_seconds)
        return state if return_state else state.result()

    return call


__all__ = ["STAGES", "distill_stage", "gpu_stage", "run_gpu_stage", "train_teachers_stage"]
