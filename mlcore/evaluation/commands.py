"""What `mlcore evaluate` and `mlcore benchmark` do: pick what is measured, measure it, write the files.

    result, files = evaluate_target("test.json", model="student/best.pt", output="eval/")
    predict_target_shard("test.json", Shard(0, 3), "eval/shards/predictions.shard-1-of-3.json", model="best.pt")
    result, files = evaluate_shards("test.json", ["eval/shards/...1-of-3.json", ...], output="eval/")  # = the above
    report = benchmark_models(["best.pt", "model.onnx", "model.int8.onnx"], "val.json", teachers="teachers/",
                              output="bench/")

A model is any file `load_engine` opens (.pt, .onnx, .engine); the teachers are the folder `train-teacher` wrote,
run with prompts (GroundedSAM) and named by the `.mode_config.json` beside the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import ConfigError
from mlcore.evaluation.coco_map import load_annotations
from mlcore.evaluation.evaluate import (
    EvaluationResult,
    Predictions,
    evaluate_engine,
    evaluate_results_file,
    predict_engine,
    score_predictions,
    write_evaluation,
)
from mlcore.evaluation.memory import benchmark_memory
from mlcore.evaluation.report import ComparisonReport, ReportEntry, comparison_report
from mlcore.evaluation.shards import Shard, ShardFile, merge_shards, write_shard
from mlcore.evaluation.speed import benchmark_speed
from mlcore.evaluation.teacher_scores import evaluate_teacher, predict_teacher
from mlcore.io import sha256_file
from mlcore.logs import get_logger

log = get_logger(__name__)

PathLike = str | os.PathLike[str]


def evaluate_target(data: PathLike, *, model: PathLike | None = None, teachers: PathLike | None = None,
                    predictions: PathLike | None = None, images: PathLike | None = None,
                    output: PathLike | None = None, device: str = "auto", batch_size: int = 8,
                    progress: bool = True) -> tuple[EvaluationResult, dict[str, Path]]:
    """COCO metrics of one model, the teachers, or a results file on `data`; written to `output` when given."""
    given = [name for name, value in (("--model", model), ("--teachers", teachers), ("--predictions", predictions))
             if value is not None]
    if len(given) != 1:
        raise ConfigError(f"evaluate needs exactly one of --model, --teachers, --predictions (got "
                          f"{', '.join(given) or 'none'})", fix="pass one of them")
    if predictions is not None:
        result = evaluate_results_file(predictions, data, name=Path(predictions).name)
    else:
        result = score_predictions(predict_target(data, model=model, teachers=teachers, images=images, device=device,
                                                  batch_size=batch_size, progress=progress), data)
    files = write_evaluation(result, output, predictions=predictions is None) if output is not None else {}
    return result, files


def predict_target(data: PathLike, *, model: PathLike | None = None, teachers: PathLike | None = None,
                   images: PathLike | None = None, device: str = "auto", batch_size: int = 8, progress: bool = True,
                   shard: Shard = Shard()) -> Predictions:
    """The predictions `evaluate_target` scores, of one model or the teachers: every image, or `shard`'s."""
    dataset = CocoDataset(data, images)
    if teachers is not None:
        mode, grounded_sam = _teachers(teachers, data, device)
        return predict_teacher(grounded_sam, dataset, data, mode.category_ids, progress=progress, shard=shard)
    from mlcore.inference import load_engine

    engine = load_engine(model, device=device)
    return predict_engine(engine, dataset, data, batch_size=batch_size, progress=progress, shard=shard,
                          class_agnostic=_class_agnostic(engine.class_names, dataset))


def predict_target_shard(data: PathLike, shard: Shard, output_file: PathLike, *, model: PathLike | None = None,
                         teachers: PathLike | None = None, images: PathLike | None = None, device: str = "auto",
                         batch_size: int = 8, progress: bool = True) -> ShardFile:
    """One worker's part of an evaluation: `shard`'s predictions of the model or the teachers, to `output_file`."""
    given = [name for name, value in (("--model", model), ("--teachers", teachers)) if value is not None]
    if len(given) != 1:
        raise ConfigError(f"a shard predicts exactly one of --model, --teachers (got {', '.join(given) or 'none'})",
                          fix="pass one of them")
    predicted = predict_target(data, model=model, teachers=teachers, images=images, device=device,
                               batch_size=batch_size, progress=progress, shard=shard)
    return write_shard(predicted, shard, output_file, data_sha256=sha256_file(data))


def evaluate_shards(data: PathLike, shard_files: Sequence[PathLike], *, output: PathLike | None = None
                    ) -> tuple[EvaluationResult, dict[str, Path]]:
    """Every shard's predictions merged and scored once: what `evaluate_target` gives for the whole split."""
    annotations = load_annotations(data)
    result = score_predictions(merge_shards(shard_files, annotations, data_sha256=sha256_file(data)), annotations)
    files = write_evaluation(result, output) if output is not None else {}
    return result, files


def benchmark_models(models: Sequence[PathLike], data: PathLike, output: PathLike, *, images: PathLike | None = None,
                     teachers: PathLike | None = None, device: str = "auto", runs: int = 20, warmup: int = 3,
                     batch_sizes: Sequence[int] = (1, 8), speed_images: int = 8, memory: bool = True,
                     progress: bool = True) -> ComparisonReport:
    """Accuracy, latency (p50/p95, FPS) and peak memory of each model (and the teachers) on the same images."""
    from mlcore.inference import load_engine

    dataset = CocoDataset(data, images)
    sample = [dataset[index].image_path for index in range(min(speed_images, len(dataset)))]
    entries = []
    if teachers is not None:
        mode, grounded_sam = _teachers(teachers, data, device)
        log.info("benchmarking the teachers (%s)", ", ".join(grounded_sam.teachers))
        entries.append(ReportEntry(
            name="teachers", format="teacher", path=teachers,
            accuracy=evaluate_teacher(grounded_sam, dataset, data, mode.category_ids, progress=progress),
            speed=benchmark_speed(grounded_sam.predict, sample, warmup=min(warmup, 1), runs=max(1, runs // 10),
                                  batch_sizes=[1], name="teachers"),
            memory=benchmark_memory(_teachers_predict, str(teachers), str(data), device, sample[:1])
            if memory else None,
            notes="GroundedSAM with the class names as prompts"))
    for path in models:
        engine = load_engine(path, device=device)
        log.info("benchmarking %s (%s)", path, engine.name)
        entries.append(ReportEntry(
            name=Path(path).name, format=model_format(path), path=path,
            accuracy=evaluate_engine(engine, dataset, data, progress=progress,
                                     class_agnostic=_class_agnostic(engine.class_names, dataset)),
            speed=benchmark_speed(engine, sample, warmup=warmup, runs=runs, batch_sizes=batch_sizes,
                                  name=Path(path).name),
            memory=benchmark_memory(_engine_predict, str(path), device, sample[:1]) if memory else None))
    baseline = Path(models[0]).name if models else "teachers"
    return comparison_report(entries, output, baseline=baseline)


def _teachers(teachers: PathLike, data: PathLike, device: str) -> tuple[ModeConfig, Any]:
    from mlcore.teachers.grounded_sam import GroundedSAM

    beside = Path(data).parent / MODE_CONFIG_NAME
    if not beside.is_file():
        raise ConfigError(f"no {MODE_CONFIG_NAME} beside the data, so the teachers' classes are unknown",
                          where=str(data), fix="evaluate on a split file written by `mlcore validate --split`")
    mode = ModeConfig.read(beside)
    return mode, GroundedSAM.from_pretrained(teachers, mode, device=None if device == "auto" else device)


def _class_agnostic(class_names: Sequence[str], dataset: CocoDataset) -> bool:
    """A one-class model (FastSAM) on a file with several categories is scored class-agnostically."""
    return len(class_names) == 1 and len(dataset.categories) > 1


def model_format(path: PathLike) -> str:
    """pytorch, onnx, onnx-int8, onnx-int8-dynamic, onnx-fp16 or tensorrt, from the file name export writes."""
    name = Path(path).name.lower()
    if name.endswith(".onnx"):
        precision = name[:-len(".onnx")].partition(".")[2]
        return f"onnx-{precision}" if precision else "onnx"
    suffix = Path(path).suffix
    return {".pt": "pytorch", ".engine": "tensorrt", ".plan": "tensorrt"}.get(suffix, suffix.lstrip("."))


# Run in a child process by benchmark_memory: module-level, so they pickle.

def _engine_predict(path: str, device: str, images: list[Path]) -> None:
    from mlcore.inference import load_engine

    load_engine(path, device=device).predict(images)


def _teachers_predict(teachers: str, data: str, device: str, images: list[Path]) -> None:
    _, grounded_sam = _teachers(teachers, data, device)
    grounded_sam.predict(images)
