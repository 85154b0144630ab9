"""`mlcore` command line: thin commands over the library; user errors print as one message, exit code 2."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mlcore.cli import deploy
from mlcore.cli import pipeline as pipeline_commands
from mlcore.cli import store as store_commands
from mlcore.cli.augment import augment_app
from mlcore.cli.pretrain import pretrain_teachers
from mlcore.errors import MlcoreError

app = typer.Typer(
    name="mlcore", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Turn a COCO-annotated dataset into a fast, prompt-free edge model.",
)
# soft_wrap: piped output (CI logs, `| less`) keeps long paths and messages on one line.
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

EXIT_UNUSABLE = 2


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class ImageCheckOption(str, Enum):
    full = "full"
    header = "header"
    none = "none"


class ModeOption(str, Enum):
    auto = "auto"
    detection_only = "detection_only"
    segmentation_only = "segmentation_only"
    detection_and_segmentation = "detection_and_segmentation"


class CrowdOption(str, Enum):
    auto = "auto"
    yes = "yes"
    no = "no"


class DemoModeOption(str, Enum):
    both = "both"
    boxes = "boxes"
    masks = "masks"


@app.callback()
def _setup(
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="Console log level.")] = LogLevel.WARNING,
    log_file: Annotated[Optional[Path], typer.Option(envvar="MLCORE_LOG_FILE",
                                                     help="Also log, from DEBUG up, to this rotating file.")] = None,
) -> None:
    from mlcore.logs import setup_logging

    setup_logging(level=log_level.value, log_file=log_file)


@app.command()
def validate(
    data: Annotated[Path, typer.Option("--data", help="COCO annotation JSON, or a labelling tool's export folder "
                                       "(Roboflow, CVAT, Label Studio, COCO layouts; its own splits are kept).")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder (default: found beside the JSON: its folder, "
                                                   "images/, ../images, COCO's layout).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Write splits, e.g. train:0.7,val:0.15,test:0.15.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split.")] = 42,
    output: Annotated[Optional[Path], typer.Option(help="Output folder (default: <stem>_prepared/ beside the JSON).")] = None,
    generate_configs: Annotated[bool, typer.Option("--generate-configs",
                                                   help="Write filled active configs under --configs-dir.")] = False,
    configs_dir: Annotated[Path, typer.Option(help="Where --generate-configs writes.")] = Path("configs"),
    overwrite_configs: Annotated[bool, typer.Option("--overwrite-configs",
                                                    help="Replace active configs that already exist.")] = False,
    image_check: Annotated[ImageCheckOption, typer.Option(
        help="full: decode every image; header: open headers only; none: trust the JSON.")] = ImageCheckOption.header,
    keep_empty_classes: Annotated[bool, typer.Option("--keep-empty-classes",
                                                     help="Keep categories no annotation uses as classes.")] = False,
    mode: Annotated[ModeOption, typer.Option(help="Annotation mode; auto detects it.")] = ModeOption.auto,
    crowd_as_instances: Annotated[CrowdOption, typer.Option(
        help="Train iscrowd=1 masks as objects: auto does when (nearly) every mask is crowd, as CVAT's COCO 1.0 "
        "export writes them.")] = CrowdOption.auto,
    group_by: Annotated[Optional[str], typer.Option(
        help="Regular expression on file names; images with the same match (first group) stay in one split. "
        "Default: the source photo Roboflow records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Check a COCO dataset, repair what can be repaired, detect its mode, and split it."""
    from mlcore.data.prepare import prepare_dataset

    report = prepare_dataset(
        data, images_dir=images, output_dir=output, split=split, seed=seed, image_check=image_check.value,
        keep_empty_classes=keep_empty_classes, mode=None if mode == ModeOption.auto else mode.value,
        configs_dir=configs_dir if generate_configs else None, overwrite_configs=overwrite_configs,
        progress=progress and not as_json, crowd_as_instances=crowd_as_instances.value, group_by=group_by,
    )
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        from mlcore.cli.summary import print_summary

        print_summary(report, stdout)
    raise typer.Exit(0 if report.usable else EXIT_UNUSABLE)


@app.command("demo-data")
def demo_data(
    output: Annotated[Path, typer.Option(help="Folder to write images/ and annotations.json into.")],
    mode: Annotated[DemoModeOption, typer.Option(help="both: boxes and polygons; boxes; masks.")] = DemoModeOption.both,
    images: Annotated[int, typer.Option("--images", min=1, help="Number of images.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate a small COCO dataset of simple shapes with exact polygons."""
    from mlcore.data.demo import make_demo_dataset

    path = make_demo_dataset(output, mode=mode.value, num_images=images, seed=seed)
    stdout.print(f"wrote {images} images and {path}", highlight=False)


@app.command("train-teacher")
def train_teacher(
    data: Annotated[Path, typer.Option("--data", help="COCO JSON of the training split (from `mlcore validate`).")],
    val: Annotated[Path, typer.Option("--val", help="COCO JSON of the validation split.")],
    output: Annotated[Path, typer.Option("--output", help="Run folder: adapters, checkpoints, metrics.json.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data, and of --val unless --val-images "
                                                   "(default: the folder `validate` recorded, else found beside the "
                                                   "JSON).")] = None,
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Image folder of --val, when it is not "
                                                       "--images.")] = None,
    auto_detect: Annotated[bool, typer.Option("--auto-detect", help="No .mode_config.json beside --data: run the "
                                              "validate step into OUTPUT/dataset/ to detect the mode.")] = False,
    preset: Annotated[Optional[str], typer.Option(help="tiny: tiny presets for both teachers (CPU smoke runs); "
                                                  "or one full-size preset name.")] = None,
    gpu: Annotated[Optional[int], typer.Option("--gpu", help="Train on cuda:N.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: cuda:0 if any, else cpu).")
                      ] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override both teachers' training.epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Override training.batch_size.")] = None,
    config: Annotated[Optional[list[Path]], typer.Option(
        "--config", help="Teacher config YAML; give it twice for one Grounding DINO and one SAM config.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in OUTPUT.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune the teachers the dataset's mode needs (Grounding DINO and/or SAM) with LoRA."""
    from mlcore.finetune.setup import train_teachers

    result = train_teachers(data, val, output, auto_detect=auto_detect, images=images, val_images=val_images,
                            preset=preset, device=device, gpu=gpu,
                            epochs=epochs, batch_size=batch_size, config_files=config or [], resume=resume,
                            progress=progress)
    for family, run in result.runs.items():
        stdout.print(f"{family}: best {run.best_metric} {run.best if run.best is not None else float('nan'):.4f} "
                     f"(epoch {run.best_epoch}) -> {run.adapter_dir}", highlight=False)
    stdout.print(f"metrics: {result.metrics_path}", highlight=False)


@app.command("train-student")
def train_student(
    data: Annotated[Path, typer.Option("--data", help="COCO JSON of the training split (from `mlcore validate`).")],
    val: Annotated[Path, typer.Option("--val", help="COCO JSON of the validation split.")],
    teachers: Annotated[Path, typer.Option("--teachers", help="Folder `mlcore train-teacher` wrote (adapters).")],
    output: Annotated[Path, typer.Option("--output", help="Run folder: best.pt, last.pt, student.json, metrics.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data, and of --val unless --val-images "
                                                   "(default: the folder `validate` recorded, else found beside the "
                                                   "JSON).")] = None,
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Image folder of --val, when it is not "
                                                       "--images.")] = None,
    auto_detect: Annotated[bool, typer.Option("--auto-detect", help="No .mode_config.json beside --data: run the "
                                              "validate step into OUTPUT/dataset/ to detect the mode.")] = False,
    student: Annotated[Optional[str], typer.Option(help="yolov8n..x, yolov8n-seg..x-seg, fastsam-s/x; add -relu "
                                                   "(yolov8n-relu) for the faster-in-int8 variant (default: the "
                                                   "mode's recommendation).")] = None,
    unlabeled: Annotated[Optional[Path], typer.Option(help="Folder of images without annotations: the teachers "
                                                      "label them and they join training.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override training.epochs.")] = None,
    imgsz: Annotated[Optional[int], typer.Option(min=32, help="Square input size, a multiple of 32.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Override training.batch.")] = None,
    gpu: Annotated[Optional[int], typer.Option("--gpu", help="Train on cuda:N.")] = None,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="Train on several GPUs of this machine, e.g. 0,1 "
                                                "(one process each, DDP); --batch-size is the total over them.")
                    ] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: cuda:0 if any, else cpu).")
                      ] = None,
    config: Annotated[Optional[list[Path]], typer.Option(
        "--config", help="kd_*, student_*, augmentation, training_dynamics or checkpoint_config YAML; repeatable.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in OUTPUT.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Distil the fine-tuned teachers into a prompt-free student (YOLOv8, YOLOv8-seg or FastSAM)."""
    from mlcore.distill.setup import train_student as run_distillation

    result = run_distillation(data, val, output, teachers=teachers, auto_detect=auto_detect, images=images,
                              val_images=val_images, student=student,
                              unlabeled=unlabeled, epochs=epochs, imgsz=imgsz, batch_size=batch_size, device=device,
                              gpu=gpu, config_files=config or [], resume=resume, progress=progress, devices=gpus)
    best = f"{result.best:.4f}" if result.best is not None else "n/a"
    stdout.print(f"student {result.student}: best {result.best_metric} {best} (epoch {result.best_epoch}); "
                 f"teachers labelled {result.teacher_calls} image(s), {result.pseudo_labelled_images} without "
                 f"annotations", highlight=False)
    stdout.print(f"weights: {result.best_path}, {result.last_path}; summary: {result.output_dir / 'student.json'}",
                 highlight=False)


app.command("optimize")(deploy.optimize)
app.command("infer")(deploy.infer)
app.command("evaluate")(deploy.evaluate)
app.command("benchmark")(deploy.benchmark)


config_app = typer.Typer(help="Configuration templates and files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(augment_app, name="augment")


@config_app.command("list")
def config_list() -> None:
    """List the shipped templates (configs/templates/)."""
    from mlcore.config import CONFIG_SCHEMAS, templates_dir

    for kind in sorted(CONFIG_SCHEMAS):
        stdout.print(f"{kind:32} {templates_dir() / (kind + '.template.yaml')}", highlight=False)


@config_app.command("check")
def config_check(files: Annotated[list[Path], typer.Argument(help="YAML config files to validate.")]) -> None:
    """Validate config files against their schemas (the `kind:` key picks the schema)."""
    from mlcore.config import load_config

    failed = 0
    for path in files:
        try:
            config = load_config(path)
        except MlcoreError as error:
            failed += 1
            stderr.print(f"[bold red]invalid[/] {path}", highlight=False)
            stderr.print(str(error), markup=False, highlight=False)
            continue
        stdout.print(f"ok  {path} ({type(config).__name__})", highlight=False)
    raise typer.Exit(EXIT_UNUSABLE if failed else 0)


app.command("pipeline")(pipeline_commands.pipeline)
app.command("demo")(pipeline_commands.demo)
app.command("store")(store_commands.store)
app.command("pretrain-teachers")(pretrain_teachers)
# `make run` and older scripts call `mlcore run`: the same as `mlcore demo`.
app.command("run", help="Same as `mlcore demo`.")(pipeline_commands.demo)


def main() -> None:
    try:
        app()
    except MlcoreError as error:
        stderr.print("[bold red]error[/]: ", end="")
        stderr.print(str(error), markup=False, highlight=False)
        sys.exit(EXIT_UNUSABLE)


if __name__ == "__main__":
    main()
