"""`mlcore optimize`, `infer`, `evaluate` and `benchmark`: what happens to a trained student on its way to a device."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mlcore.errors import ConfigError

stdout = Console(soft_wrap=True)


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"
    int8_dynamic = "int8-dynamic"
    fp16 = "fp16"


def optimize(
    model: Annotated[Path, typer.Option("--model", help="Student checkpoint (.pt, from train-student).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for model.onnx, quantized models, export.json.")],
    format: Annotated[list[str], typer.Option("--format", help="onnx (always written) and/or engine (TensorRT); "
                                              "repeatable.")] = ["onnx"],  # noqa: B006 (typer needs a list)
    quantize: Annotated[Quantize, typer.Option(help="int8: static, calibrated (QDQ, per-channel); int8-dynamic; "
                                               "fp16; none.")] = Quantize.none,
    calib_data: Annotated[Optional[Path], typer.Option("--calib-data", help="Calibration images: a folder, or a "
                                                       "COCO file (use training images).")] = None,
    calib_images: Annotated[Optional[Path], typer.Option("--calib-images", help="Image folder of a --calib-data "
                                                         "COCO file (default: --images).")] = None,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="COCO file of the validation split: the "
                                                     "accuracy gate compares mAP before and after quantizing.")] = None,
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Its image folder (default: --images).")
                          ] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of the --calib-data and --val-data COCO files "
                                                   "(default: the folder `validate` recorded, else found beside the "
                                                   "JSON).")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Input size (default: the checkpoint's training size).")
                     ] = None,
    config: Annotated[Optional[list[Path]], typer.Option("--config", help="quantization and/or tensorrt YAML; "
                                                         "repeatable.")] = None,
) -> None:
    """Export a student to ONNX, quantize it behind an accuracy gate, and build a TensorRT engine where installed."""
    from mlcore.config import load_config
    from mlcore.config.schemas.optimization import QuantizationConfig, TensorRTConfig
    from mlcore.optimization import optimize_model

    quantization = tensorrt = None
    for path in config or []:
        loaded = load_config(path)
        if isinstance(loaded, QuantizationConfig):
            quantization = loaded
        elif isinstance(loaded, TensorRTConfig):
            tensorrt = loaded
        else:
            raise ConfigError(f"--config takes quantization or tensorrt configs, this one is {loaded.kind!r}",
                              where=str(path), fix="pass quantization.yaml and/or tensorrt.yaml")
    result = optimize_model(model, output, formats=format, quantize=quantize.value, calibration_data=calib_data,
                            calibration_images_dir=calib_images or images, val_data=val_data,
                            val_images=val_images or images,
                            imgsz=imgsz, config=quantization, tensorrt_config=tensorrt)
    for entry in result.files:
        stdout.print(f"{entry['name']:28} {entry['precision']:6} {entry['size_mb']:8.2f} MB", highlight=False)
    if result.gate is not None:
        stdout.print(f"accuracy gate: {result.gate.reason}", highlight=False)
    elif result.gate_skipped_reason:
        stdout.print(f"accuracy gate: not evaluated ({result.gate_skipped_reason})", highlight=False)
    stdout.print(f"recommended: {result.recommended} ({result.recommended_reason}); report: {result.report_path}",
                 highlight=False)


def infer(
    model: Annotated[Path, typer.Option("--model", help=".pt, .onnx or TensorRT .engine.")],
    source: Annotated[Path, typer.Option("--source", help="An image, a folder of images, or a COCO file (its "
                                         "images, with its image and category ids).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for overlays/, predictions.json.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder of a COCO --source (default: the folder "
                                                   "`validate` recorded, else found beside the JSON).")] = None,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="Score threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(min=0.0, max=1.0, help="NMS IoU threshold.")] = 0.7,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto (CUDA when the runtime has it), cpu or cuda.")] = "auto",
    class_names: Annotated[Optional[str], typer.Option("--class-names", help="Comma-separated class names, for "
                                                       "models that do not carry them.")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Input size, for models that do not say it.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="ONNX Runtime threads for the model (default: one "
                                                   "per core); leave cores to other work on a shared device.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Threads that decode the next images and write the previous "
                                         "outputs while the model runs.")] = 2,
) -> None:
    """Run a model on images; write overlays (boxes, names, masks) and a COCO results file."""
    from mlcore.inference import infer_folder, load_engine

    names = [name.strip() for name in class_names.split(",")] if class_names else None
    engine = load_engine(model, device=device, imgsz=imgsz, class_names=names, threads=threads)
    summary = infer_folder(engine, source, output, conf=conf, iou=iou, batch_size=batch_size, images_dir=images,
                           progress=True, workers=workers)
    stdout.print(f"{summary.num_images} image(s), {summary.num_detections} detection(s) "
                 f"({', '.join(f'{k} {v}' for k, v in summary.detections_per_class.items()) or 'none'})",
                 highlight=False)
    stdout.print(f"overlays: {summary.overlays_dir}; results: {summary.predictions_file}", highlight=False)


def evaluate(
    data: Annotated[Path, typer.Option("--data", help="COCO file of the split to score on (e.g. test.json).")],
    model: Annotated[Optional[Path], typer.Option("--model", help=".pt, .onnx or .engine.")] = None,
    teachers: Annotated[Optional[Path], typer.Option("--teachers", help="Teachers folder (train-teacher's "
                                                     "output), run with the class names as prompts.")] = None,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="A COCO results file to score.")
                           ] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data (default: the folder "
                                                   "`validate` recorded, else found beside the JSON).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write metrics.json, PR curves (PNG) and predictions.")
                      ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """COCO mAP (boxes, and masks where the data has them), per class, with PR curves."""
    from mlcore.evaluation.commands import evaluate_target

    result, files = evaluate_target(data, model=model, teachers=teachers, predictions=predictions, images=images,
                                    output=output, device=device)
    for key, value in result.metrics().items():
        if value is not None:
            stdout.print(f"{key:16} {value:.4f}", highlight=False)
    if files:
        stdout.print(f"written: {', '.join(str(path) for path in files.values())}", highlight=False)


def benchmark(
    models: Annotated[list[Path], typer.Option("--models", help="Model files to compare (.pt, .onnx, .engine): "
                                               "--models a.pt b.onnx ...; the first is the baseline of the ratios.")],
    data: Annotated[Path, typer.Option("--data", help="COCO file of the split to measure on.")],
    more_models: Annotated[Optional[list[Path]], typer.Argument(
        help="The models after the first one of --models (typer options take one value each).",
        show_default=False)] = None,
    output: Annotated[Path, typer.Option(help="Folder for report.md, report.json, report.png.")] = Path("benchmark"),
    teachers: Annotated[Optional[Path], typer.Option("--teachers", help="Also measure the teachers (prompted).")
                        ] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data (default: the folder "
                                                   "`validate` recorded, else found beside the JSON).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per batch size.")] = 20,
    batch_size: Annotated[list[int], typer.Option("--batch-size", help="Batch sizes to time; repeatable.")
                          ] = [1, 8],  # noqa: B006 (typer needs a list)
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Teacher vs student vs each export: accuracy, latency, FPS, memory and size, side by side."""
    from mlcore.evaluation.commands import benchmark_models

    report = benchmark_models([*models, *(more_models or [])], data, output, images=images, teachers=teachers, device=device, runs=runs,
                              batch_sizes=batch_size)
    stdout.print(report.files["markdown"].read_text() if "markdown" in report.files else "", highlight=False)
    stdout.print(f"report: {', '.join(str(path) for path in report.files.values())}", highlight=False)
