"""`mlcore pipeline` and `mlcore demo`: the whole training pipeline as one Prefect flow run.

Without PREFECT_API_URL, Prefect starts an embedded server for the run (no set-up needed); with it, the run is
recorded on that server and shows up in its UI.

Every finished run is also stored (`--store`): its outputs worth keeping (prepared splits, teacher adapters, student
weights, exports, evaluation, benchmark, report) with a verified manifest.json, in `data/runs/<run-id>` by default.
The run folder (`--output`) is a workspace the next run into it reuses and overwrites; the stored copy stays as it
was. `--store s3://bucket/prefix` keeps it in S3; `--store none` keeps only the run folder. The store is checked
before the first stage (bucket, credentials, the right to write); outages during the store step are ridden out for
`--store-retry-minutes`; after a longer one the report says "not stored" and `mlcore store OUTPUT` finishes it.

`--data s3://bucket/key.json` (and `--images`, `--val`, `--test`) reads a dataset from S3: it is mirrored into
OUTPUT/source first (a rerun downloads only what changed). S3 endpoint, region and credentials come from the AWS
environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE), or from the
prefect-aws AwsCredentials block named by `--aws-credentials`.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
EXIT_FAILED = 2
STORE_HELP = ("Where the run's outputs are kept, with a verified manifest.json: a folder (each run in "
              "<folder>/<run-id>), s3://bucket/prefix (credentials: the AWS environment or --aws-credentials), "
              "or none.")
RETRY_HELP = ("How long the store step retries a request or file that fails with a transient error (connection "
              "refused or reset, 5xx, throttling): the longest outage it rides out. Files already stored are never "
              "sent again.")


class Mode(str, Enum):
    """The flow's `mode` words: the annotation modes, and `mlcore demo-data --mode`'s words for them."""

    auto = "auto"
    detection_only = "detection_only"
    segmentation_only = "segmentation_only"
    detection_and_segmentation = "detection_and_segmentation"
    boxes = "boxes"
    masks = "masks"
    both = "both"


class Quantize(str, Enum):
    int8 = "int8"
    int8_dynamic = "int8-dynamic"
    none = "none"


def pipeline(
    # Text, not Path: Path("s3://bucket/key") would collapse the "//".
    data: Annotated[str, typer.Option("--data", help="COCO annotation JSON: a path or s3://bucket/key (fetched with "
                                      "its images into OUTPUT/source first).")],
    val: Annotated[Optional[str], typer.Option(help="Validation COCO JSON, a path or s3:// (default: split --data).")
                   ] = None,
    test: Annotated[Optional[str], typer.Option(help="Test COCO JSON (path or s3://) for the final comparison "
                                                "(default: the split's test part, or --val).")] = None,
    images: Annotated[Optional[str], typer.Option(help="Image folder of --data, a path or s3://bucket/prefix "
                                                  "(default: found beside the JSON); also of --val and --test when "
                                                  "it holds their images.")] = None,
    unlabeled: Annotated[Optional[str], typer.Option(help="Folder of images without annotations: the teachers "
                                                     "label them and the student trains on them too.")] = None,
    mode: Annotated[Mode, typer.Option(help="Annotation mode; auto detects it. boxes, masks, both (demo-data's "
                                       "words) are detection_only, segmentation_only, detection_and_segmentation.")
                    ] = Mode.auto,
    teacher_preset: Annotated[Optional[str], typer.Option(help="tiny (CPU smoke runs), shapes (the demo's "
                                                          "pretrained teachers) or a full-size preset name "
                                                          "(default: the teacher configs').")] = None,
    student: Annotated[Optional[str], typer.Option(help="yolov8n..x, yolov8n-seg..x-seg, fastsam-s/x; add -relu "
                                                   "(yolov8n-relu) for the faster-in-int8 variant (default: the "
                                                   "mode's recommendation).")] = None,
    teacher_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per teacher.")] = None,
    student_epochs: Annotated[Optional[int], typer.Option(min=1, help="Distillation epochs.")] = None,
    imgsz: Annotated[Optional[int], typer.Option(min=32, help="Student input size, a multiple of 32.")] = None,
    export_format: Annotated[Optional[list[str]], typer.Option(
        "--format", help="onnx (always written) and/or engine (TensorRT); repeatable.")] = None,
    quantize: Annotated[Quantize, typer.Option(help="int8 (static, calibrated), int8-dynamic or none; kept only if "
                                               "the accuracy gate passes.")] = Quantize.int8,
    output: Annotated[Path, typer.Option(help="Run folder; rerunning into the same folder reuses finished stages.")
                      ] = Path("data/runs/latest"),
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: a GPU when there is one).")
                      ] = None,
    split: Annotated[str, typer.Option(help="Split ratios when no --val is given.")] = "train:0.7,val:0.15,test:0.15",
    seed: Annotated[int, typer.Option(help="Seed for the split.")] = 42,
    benchmark_runs: Annotated[int, typer.Option(min=1, help="Timed runs per model in the benchmark.")] = 5,
    store: Annotated[str, typer.Option(help=STORE_HELP)] = "data/runs",
    store_retry_minutes: Annotated[float, typer.Option(min=0, help=RETRY_HELP)] = 10.0,
    aws_credentials: Annotated[Optional[str], typer.Option(
        "--aws-credentials", metavar="BLOCK", help="Name of a prefect-aws AwsCredentials block for s3:// data and "
        "store (default: the AWS environment).")] = None,
    shards: Annotated[int, typer.Option(min=1, help="Split teacher labelling and each evaluation into N image "
                                        "shards, run as mapped tasks: on the Dask cluster of --dask-address, else in "
                                        "threads of this process (docs/SCALING.md).")] = 1,
    dask_address: Annotated[Optional[str], typer.Option(
        "--dask-address", envvar="MLCORE_DASK_ADDRESS", metavar="tcp://HOST:8786",
        help="Dask scheduler whose workers run the shards (needs the cluster extra and PREFECT_API_URL).")] = None,
) -> None:
    """Run the whole pipeline on a dataset: validate, split, teachers, distill, export, evaluate, benchmark, report,
    store."""
    run_pipeline({
        "data": data, "val": val, "test": test, "images": images, "unlabeled": unlabeled, "mode": mode.value,
        "teacher_preset": teacher_preset, "student": student, "teacher_epochs": teacher_epochs,
        "student_epochs": student_epochs, "imgsz": imgsz, "export_formats": export_format or ["onnx"],
        "quantize": quantize.value, "output": str(output), "device": device, "split": split, "seed": seed,
        "benchmark_runs": benchmark_runs, "store": store, "aws_credentials": aws_credentials,
        "store_retry_minutes": store_retry_minutes, "label_shards": shards, "eval_shards": shards},
        dask_address=dask_address)


def demo(
    output: Annotated[Optional[Path], typer.Option(help="Run folder (default: data/demo).")] = None,
    images: Annotated[Optional[int], typer.Option("--images", min=6, help="Images in the generated dataset.")
                      ] = None,
    teacher_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per (tiny) teacher.")] = None,
    student_epochs: Annotated[Optional[int], typer.Option(min=1, help="Distillation epochs.")] = None,
    imgsz: Annotated[Optional[int], typer.Option(min=32, help="Student input size, a multiple of 32.")] = None,
    device: Annotated[Optional[str], typer.Option(help="Default cpu, so the demo behaves the same everywhere.")
                      ] = None,
    store: Annotated[Optional[str], typer.Option(help=STORE_HELP + " Default: data/runs.")] = None,
    store_retry_minutes: Annotated[Optional[float], typer.Option(min=0, help=RETRY_HELP + " Default: 10.")] = None,
    shards: Annotated[Optional[int], typer.Option(min=1, help="Teacher labelling and evaluation as N mapped "
                                                  "shard tasks (in threads here; docs/SCALING.md).")] = None,
) -> None:
    """Generate a small shapes dataset and run the whole pipeline on it with tiny models (a few minutes on a CPU)."""
    from flows.pipeline import demo_parameters  # flows/ sets Prefect's defaults before Prefect loads

    run_pipeline(demo_parameters(output=_text(output), demo_images=images, teacher_epochs=teacher_epochs,
                                 student_epochs=student_epochs, imgsz=imgsz, device=device, store=store,
                                 store_retry_minutes=store_retry_minutes, label_shards=shards, eval_shards=shards))


def run_pipeline(parameters: dict[str, Any], dask_address: str | None = None) -> None:
    """Run the flow (its shards on the Dask cluster at DASK_ADDRESS when given); print where the report is, or the
    failing stage's message (exit code 2)."""
    _check_store(parameters.get("store", "data/runs"), parameters.get("aws_credentials"))
    from flows.pipeline import training_pipeline
    from flows.shards import with_task_runner

    state = with_task_runner(training_pipeline, dask_address)(**parameters, return_state=True)
    if state.is_failed():
        stderr.print("[bold red]pipeline failed[/]: ", end="")
        stderr.print(state.message or "see the Prefect logs above", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED)
    result = state.result()
    stdout.print(result.summary, highlight=False)
    stdout.print(f"\nReport: {result.report['markdown']}\n        {result.report['html']}", highlight=False)
    sys.stdout.flush()


def _check_store(store: str | None, aws_credentials: str | None) -> None:
    """The store's check before any work, as the flow makes it, with the flow's message; here it answers before
    Prefect and the pipeline's libraries load. A credentials block lives on the Prefect server: the flow checks it."""
    if aws_credentials:
        return
    from mlcore.storage import StorageError, check_store, store_target
    from mlcore.storage.location import unusable_store_message

    try:
        target = store_target(store)
        if target:
            check_store(target)
    except StorageError as error:
        stderr.print("[bold red]pipeline failed[/]: ", end="")
        stderr.print(unusable_store_message(store, error), markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
