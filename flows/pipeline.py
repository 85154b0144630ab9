"""`training-pipeline`: the product's main job, one stage per task.

check the store (before any work: bucket, credentials, the right to write) -> demo data (when no dataset is
given), or fetch (when it is in S3: a local copy in OUTPUT/source) -> validate -> split -> train the teachers the
mode needs -> distill -> export (+ quantize behind the accuracy gate) -> evaluate teachers vs student vs exports on
the test split -> benchmark -> report (report.md, report.html, Prefect artifacts) -> store (the outputs worth
keeping, with a verified manifest.json, in STORE/<run-id>: data/runs by default, or s3://bucket/prefix; outages
ridden out for STORE_RETRY_MINUTES; the report rewritten with the outcome).

Every stage but the first two is cached on its inputs' content, its settings and the code version (tasks/policy.py),
with results kept in the run folder: run the flow again with the same OUTPUT after a failure and the finished stages
are reused; training that was interrupted resumes from its checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Failed, State
from pydantic import Field

from flows.gpu_stages import gpu_stage
from flows.parameters import Count, ImageSize, Mode, Text, annotation_mode, given
from flows.shards import evaluate_in_shards, label_in_shards
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.prepare import DatasetReport
from mlcore.errors import ConfigError, MlcoreError
from mlcore.reporting import PipelineRun, StageRecord
from mlcore.storage import StorageError, new_run_id
from mlcore.storage.location import unusable_store_message
from tasks.aws import load_aws_credentials
from tasks.benchmark import benchmark_models_task
from tasks.demo import make_demo_data_task
from tasks.evaluate import evaluate_model_task, evaluate_teachers_task
from tasks.export import export_model_task
from tasks.fetch import fetch_dataset_task, needs_fetch
from tasks.policy import code_version, results_storage
from tasks.report import report_task
from tasks.store import DEFAULT_RETRY_MINUTES, StoredRun, check_run_store, pending_status, store_run_task, store_target
from tasks.validate import unusable_dataset_state, validate_dataset_task

STAGE_COUNT = 9  # (fetch,) validate, split, teachers, student, export, evaluate, benchmark, report, store

# What `mlcore demo` runs, on the CPU in minutes: shapes in the field (a labelled set and an unlabelled pool), the
# shipped `shapes` teachers (pretrained on another domain: docs/DEMO_TEACHERS.md) tuned with LoRA, a small student.
DEMO_PARAMETERS: dict[str, Any] = {
    "teacher_preset": "shapes", "teacher_epochs": 20, "student_epochs": 40, "imgsz": 192, "device": "cpu",
    "demo_images": 80, "demo_unlabeled": 160, "split": "train:0.6,val:0.2,test:0.2", "benchmark_runs": 3,
    "quantize": "int8", "output": "data/demo",
}


@dataclass
class PipelineResult:
    """Where a finished run put things, and how each stage went."""

    run_dir: Path
    report: dict[str, Path]
    recommended_model: Path | None
    stages: list[StageRecord] = field(default_factory=list)
    stored: StoredRun | None = None

    @property
    def summary(self) -> str:
        stages = ", ".join(f"{s.name} ({s.status}, {s.seconds:.0f} s)" for s in self.stages)
        text = f"stages: {stages}\nrecommended model: {self.recommended_model}"
        if self.stored is not None:
            text += (f"\nstored: {self.stored.url} ({self.stored.files} files, manifest verified; "
                     f"{self.stored.sent} sent, {self.stored.skipped} already stored)")
        return text


class StageFailed(Exception):
    """A stage ended Failed; the flow turns this into its own Failed state with the stage's message."""


@dataclass
class _Stages:
    """Runs stage tasks in order, recording ran / cached / failed and time, and moving the progress artifact."""

    progress_id: Any = None
    records: list[StageRecord] = field(default_factory=list)

    def run(self, label: str, task: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        state = task(*args, return_state=True, **kwargs)
        status = "failed" if state.is_failed() else ("cached" if state.name == "Cached" else "ran")
        self.records.append(StageRecord(label, status, time.perf_counter() - started))
        if state.is_failed():
            raise StageFailed(f"stage {label} failed: {state.message}")
        return state.result()

    def done(self, completed: int) -> None:
        if self.progress_id is not None:
            update_progress_artifact(self.progress_id, min(100.0, 100.0 * completed / STAGE_COUNT))


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    data: Text = "",
    val: Text = "",
    test: Text = "",
    images: Text = "",
    unlabeled: Text = "",
    mode: Mode = "auto",
    teacher_preset: Text = "",
    student: Text = "",
    teacher_epochs: Count = 0,
    student_epochs: Count = 0,
    imgsz: ImageSize = 0,
    export_formats: list[Literal["onnx", "engine"]] = ["onnx"],  # noqa: B006 (a parameter default, never mutated)
    quantize: Literal["int8", "int8-dynamic", "none"] = "int8",
    output: str = "data/runs/latest",
    device: Text = "",
    split: str = "train:0.7,val:0.15,test:0.15",
    seed: int = 42,
    demo_images: Annotated[int, Field(ge=6)] = 24,
    demo_unlabeled: Annotated[int, Field(ge=0)] = 0,
    benchmark_runs: Annotated[int, Field(ge=1)] = 5,
    store: Text = "data/runs",
    aws_credentials: Text = "",
    store_retry_minutes: Annotated[float, Field(ge=0)] = DEFAULT_RETRY_MINUTES,
    gpu_stages: Literal["in-process", "deployments"] = "in-process",
    label_shards: Annotated[int, Field(ge=1)] = 1,
    eval_shards: Annotated[int, Field(ge=1)] = 1,
    student_gpus: Text = "",
) -> PipelineResult | State:
    """From a COCO dataset to a quantized, evaluated, benchmarked student, with a report.

    Args:
        data: COCO annotation JSON, a path on the worker or s3://bucket/key (copied with its images into
            OUTPUT/source first); empty: generate the demo shapes dataset into OUTPUT/dataset.
        val: validation COCO JSON (path or s3://); empty: split DATA by SPLIT.
        test: test COCO JSON (path or s3://) for the final comparison; empty: the split's test part (or VAL).
        images: image folder of DATA, a path or s3://bucket/prefix; empty: found beside the JSON. Also used for
            VAL and TEST when it holds their images.
        unlabeled: folder of images without annotations, a path on the worker: the teachers label them and the
            student trains on them too; empty: the annotated images only (the demo uses its generated pool).
        mode: annotation mode; auto detects it from the data. boxes, masks and both (the words of mlcore
            demo-data) are detection_only, segmentation_only and detection_and_segmentation.
        teacher_preset: tiny (CPU smoke runs), shapes (the demo's pretrained teachers) or a full-size preset name;
            empty: the teacher configs' presets.
        student: yolov8n..x, yolov8n-seg..x-seg, fastsam-s/x, each also with -relu (yolov8n-relu: ReLU in place of
            SiLU, faster in int8); empty: the mode's recommendation.
        teacher_epochs: epochs for each teacher; 0: the teacher configs' value.
        student_epochs: distillation epochs; 0: the student config's value.
        imgsz: student input size in pixels, a multiple of 32 (e.g. 640); 0: the student config's value.
        export_formats: onnx (always written) and/or engine (TensorRT, on a GPU with TensorRT installed).
        quantize: int8 (static, calibrated on the training images), int8-dynamic or none; kept only if the
            accuracy gate passes.
        output: run folder on the worker; a rerun with the same folder reuses the stages that finished.
        device: cpu, cuda or cuda:N; empty: the first GPU when there is one.
        split: split ratios used when no VAL is given.
        seed: seed for the demo data and the split.
        demo_images: labelled images in the generated demo dataset (only without DATA).
        demo_unlabeled: images in the demo's unlabelled pool, which the teachers label for the student (only
            without DATA).
        benchmark_runs: timed runs per model in the benchmark.
        store: where the run's outputs are kept, with a verified manifest.json (sha256s, lineage): a folder on
            the worker (each run in a subfolder named by its run id) or s3://bucket/prefix; empty or none: only
            the OUTPUT folder, which the next run into it overwrites.
        aws_credentials: name of a prefect-aws AwsCredentials block for s3:// data and store; empty: the worker's
            environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID..., AWS_PROFILE, a role).
        store_retry_minutes: how long the store step keeps retrying a request or file that fails with a transient
            error (connection refused or reset, 5xx, throttling): the longest outage it rides out. What already
            arrived is never sent again; after a longer one the run fails, its report says "not stored", and
            `mlcore store OUTPUT --store STORE` finishes the upload later.
        gpu_stages: in-process: every stage runs in this flow run's process (so this flow runs on a GPU worker);
            deployments: train-teachers and distill run as those deployments on the GPU pool (mlcore-gpu), so this
            flow can run on a CPU pool. OUTPUT must then be on storage both pools' machines see, at the same path.
        label_shards: split the teachers' labelling of the training images into this many mapped tasks before
            distillation (on a Dask cluster's workers with the training-pipeline-dask deployment or `mlcore pipeline
            --dask-address`: docs/SCALING.md); 1: the distill stage labels them itself.
        eval_shards: split each evaluation's predictions into this many mapped tasks, merged and scored once.
        student_gpus: GPUs of one machine that distil the student together (DDP), e.g. 0,1; empty: DEVICE alone.
    """
    # The form's empty values ("", 0) are the stages' None ("the config's value"): the same cache keys as before.
    data, val, test, images, unlabeled = map(given, (data, val, test, images, unlabeled))
    aws_credentials = given(aws_credentials)
    teacher_preset, student, device, student_gpus = map(given, (teacher_preset, student, device, student_gpus))
    teacher_epochs, student_epochs, imgsz = map(given, (teacher_epochs, student_epochs, imgsz))
    settings = {key: value for key, value in locals().items()}
    run_dir = Path(output).resolve()
    stages = _Stages(create_progress_artifact(0.0, key="training-pipeline-progress",
                                              description=f"Stages finished, run folder {run_dir}"))
    try:
        if aws_credentials:
            load_aws_credentials(aws_credentials)  # a block name that is not on the server fails now
        # A store that cannot work fails now, not after hours of training: the location is parsed, then the bucket,
        # the credentials and the right to write are checked with a small object written and removed.
        target = store_target(store)
        if target:
            check_run_store(target, aws_credentials)
        if data is None:
            data = stages.run("demo-data", make_demo_data_task, str(run_dir / "dataset"), num_images=demo_images,
                              unlabeled=demo_unlabeled, seed=seed)
            if demo_unlabeled and unlabeled is None:
                unlabeled = str(run_dir / "dataset" / "unlabeled")
        elif needs_fetch(data, images, val, test):
            local = stages.run("fetch", fetch_dataset_task, data, str(run_dir / "source"), images=images, val=val,
                               test=test, aws_credentials=aws_credentials)
            data, images, val, test = local.data, local.images, local.val, local.test
            stages.done(1)
        report = _validated(stages, data, images, run_dir / "prepared", None if val else split, seed, mode)
        splits = _splits(stages, report, val, test, run_dir / "prepared", images=images)
        stages.done(2)

        def cached(task: Any) -> Any:
            return task.with_options(result_storage=results_storage(run_dir))

        def on_gpu(name: str) -> Any:  # the stage here, or as its deployment on the GPU pool
            return gpu_stage(name, via_deployment=gpu_stages == "deployments")

        teachers = stages.run("train-teachers", on_gpu("train-teachers"), splits["train"], splits["val"],
                              str(run_dir / "teachers"), preset=teacher_preset, device=device, epochs=teacher_epochs)
        stages.done(3)
        teacher_cache = str(run_dir / "teacher_cache")  # beside the stages: survives a student folder moved aside
        if label_shards > 1:
            stages.run("label", label_in_shards, label_shards, splits["train"], splits["val"], teachers,
                       teacher_cache, device=device, result_storage=results_storage(run_dir))
        distilled = stages.run("distill", on_gpu("distill"), splits["train"], splits["val"], teachers,
                               str(run_dir / "student"), student=student, epochs=student_epochs, imgsz=imgsz,
                               device=None if student_gpus else device, devices=student_gpus,
                               teacher_cache=teacher_cache, unlabeled=unlabeled)
        stages.done(4)
        exported = stages.run("export", cached(export_model_task), str(distilled.best_path), str(run_dir / "export"),
                              formats=list(export_formats), quantize=quantize, calibration_data=splits["train"],
                              val_data=splits["val"])
        stages.done(5)
        models = [str(distilled.best_path)] + [str(exported.output_dir / entry["name"]) for entry in exported.files]
        runtime_device = device or "auto"
        scores = _evaluated(stages, eval_shards, teachers, models, splits["test"], run_dir, runtime_device)
        stages.done(6)
        comparison = stages.run("benchmark", cached(benchmark_models_task), models, splits["test"],
                                str(run_dir / "benchmark"), scores=scores, teachers=teachers, runs=benchmark_runs,
                                device=runtime_device)
        stages.done(7)
        # The report is stored with the run, so it is written first, saying "being stored at ..."; the store step
        # then rewrites its "Stored copy" section with the outcome (stored and verified, or not stored: why, and
        # the command that finishes it), in the run folder and in the store alike (mlcore.storage.publish).
        run_id = new_run_id()
        run = PipelineRun(run_dir=run_dir, dataset=report, settings=settings, splits=splits,
                          code_version=code_version(), teachers=teachers, student=distilled, export=exported,
                          scores=scores, benchmark_rows=comparison.rows, benchmark_files=comparison.files,
                          stages=stages.records,
                          store=pending_status(run_dir, target, run_id, aws_credentials) if target else None)
        files = stages.run("report", report_task, run)
        stages.done(8)
        stored = None
        if target:
            stored = stages.run("store", store_run_task, run, target, run_id, aws_credentials,
                                retry_minutes=store_retry_minutes)
        stages.done(STAGE_COUNT)
    except StageFailed as failure:  # a new state: returning the task's own would read "1/1 states failed"
        return Failed(message=str(failure))
    except StorageError as error:
        return Failed(message=unusable_store_message(store, error))
    except ConfigError as error:
        return Failed(message=str(error))
    return PipelineResult(run_dir=run_dir, report=files, recommended_model=exported.recommended,
                          stages=stages.records, stored=stored)


def _validated(stages: _Stages, data: str, images: str | None, output: Path, split: str | None, seed: int,
               mode: Mode) -> DatasetReport:
    report = stages.run("validate", validate_dataset_task, data, images=images, output=str(output), split=split,
                        seed=seed, mode=annotation_mode(mode))
    if not report.usable:
        raise StageFailed(unusable_dataset_state(report).message)
    return report


def _splits(stages: _Stages, report: DatasetReport, val: str | None, test: str | None, prepared: Path,
            images: str | None = None) -> dict[str, str]:
    """train / val / test files: the parts validate split off, or the given files, each validated into its own folder
    (with the training data's mode forced, and every category kept, so class indices agree) and read from IMAGES
    when that folder holds their images."""

    def checked(name: str, path: str) -> str:
        result = stages.run(f"validate {name}", validate_dataset_task, path, images=_images_for(path, images),
                            output=str(prepared / name), mode=report.annotation_mode, keep_empty_classes=True)
        if not result.usable:
            raise StageFailed(unusable_dataset_state(result).message)
        return result.outputs["cleaned"]

    if val is None:
        splits = {name: report.outputs[name] for name in ("train", "val", "test")
                  if name in report.outputs and report.splits.get(name)}
        if "train" not in splits or "val" not in splits:
            raise StageFailed(f"split {report.splits} (images per part) has no train or no val images: give the "
                              "split ratios train:..,val:..[,test:..] with enough images for each part, or a VAL file")
        if "test" in report.splits and "test" not in splits:
            print(f"the test part of split {report.splits} got no image: teachers, student and exports are compared "
                  "on the val part instead (use more images, a larger test ratio, or a TEST file)")
    else:
        splits = {"train": report.outputs["cleaned"], "val": checked("val", val)}
    if test is not None:
        splits["test"] = checked("test", test)
    splits.setdefault("test", splits["val"])
    return splits


def _images_for(annotation_file: str, images: str | None) -> str | None:
    """IMAGES when that folder holds ANNOTATION_FILE's images (one folder for train, val and test), else None: they
    are then looked for as `validate` looks for them (beside the file, COCO's layout, ...)."""
    if images is None:
        return None
    try:
        CocoDataset(annotation_file, images)
    except MlcoreError:
        return None
    return images


def _evaluated(stages: _Stages, shards: int, teachers: Any, models: list[str], test: str, run_dir: Path,
               device: str) -> list[Any]:
    """Teachers and every model scored on TEST, each into evaluation/<name>: one task each, or SHARDS mapped
    prediction tasks merged and scored once."""
    storage, folder = results_storage(run_dir), run_dir / "evaluation"
    targets = [("teachers", {"teachers": teachers})] + [(Path(model).name, {"model": model}) for model in models]
    scores = []
    for name, target in targets:
        output = str(folder / name)
        if shards > 1:
            scores.append(stages.run(f"evaluate {name}", evaluate_in_shards, shards, test, output, device=device,
                                     result_storage=storage, **target))
        elif "teachers" in target:
            scores.append(stages.run(f"evaluate {name}", evaluate_teachers_task.with_options(result_storage=storage),
                                     teachers, test, output, device=device))
        else:
            scores.append(stages.run(f"evaluate {name}", evaluate_model_task.with_options(result_storage=storage),
                                     target["model"], test, output, device=device))
    return scores


def demo_parameters(**overrides: Any) -> dict[str, Any]:
    """The flow parameters `mlcore demo` runs with, updated by OVERRIDES (None values are ignored)."""
    return {**DEMO_PARAMETERS, **{key: value for key, value in overrides.items() if value is not None}}
