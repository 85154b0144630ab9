"""How good and how fast a model is: COCO box and mask mAP (pycocotools), PR curves, speed, memory, reports.

- `compute_map(annotation_file, results, category_ids)` -> `MapResult` (bbox, and segm where masks exist);
  `compute_precision_recall(...)` + `plot_pr_curves(curves, path)`; `compute_iou(mask_a, mask_b)`.
- `evaluate_engine(engine, dataset, annotation_file, category_ids)` (any inference engine),
  `evaluate_results_file(results_json, annotation_file)`, `evaluate_teacher(grounded_sam, ...)` ->
  `EvaluationResult`; `write_evaluation(result, output_dir)` writes metrics.json and PR-curve PNGs.
- `benchmark_speed(engine_or_fn, images)`, `benchmark_memory(fn)`, `benchmark_accuracy(engine, ...)`,
  `comparison_report(entries, output_dir)` (report.md, report.json, report.png).
- `coco_map(...)` and `evaluate_student(student, ...)`: the flat numbers the training loops log.
- Shards: `predict_engine` / `predict_teacher` (one `Shard` of a split) -> `merge_shards` -> `score_predictions`,
  the same numbers as one run (`commands.predict_target_shard` and `commands.evaluate_shards` wrap them).

Names are imported on first use: `benchmark_memory`'s child process, and scoring a results file, then start without
torch (which the engine and student modules import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager (and light: numpy and pycocotools): the submodule shares the function's name, and importing a submodule sets the
# package attribute of that name to the module, so a lazily imported `coco_map` would come back as the module.
from mlcore.data.masks import mask_to_rle
from mlcore.evaluation.coco_map import coco_map

_MODULE_OF = {
    "PRCurve": "curves", "plot_pr_curves": "curves",
    "EvaluationResult": "evaluate", "InferenceEngine": "evaluate", "Predictions": "results",
    "benchmark_accuracy": "evaluate", "evaluate_engine": "evaluate", "evaluate_results_file": "evaluate",
    "predict_engine": "evaluate", "score_predictions": "evaluate", "write_evaluation": "evaluate",
    "MemoryResult": "memory", "benchmark_memory": "memory",
    "ClassAP": "metrics", "CocoScores": "metrics", "MapResult": "metrics", "compute_iou": "metrics",
    "compute_map": "metrics", "compute_precision_recall": "metrics",
    "ComparisonReport": "report", "ReportEntry": "report", "comparison_report": "report",
    "read_results": "results", "write_results": "results",
    "Shard": "shards", "ShardFile": "shards", "merge_shards": "shards",
    "BatchSpeed": "speed", "SpeedResult": "speed", "benchmark_speed": "speed", "environment": "speed",
    "evaluate_student": "student_eval",
    "evaluate_teacher": "teacher_scores", "predict_teacher": "teacher_scores",
}

__all__ = sorted([*_MODULE_OF, "coco_map", "mask_to_rle"])


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from mlcore.evaluation.curves import PRCurve, plot_pr_curves
    from mlcore.evaluation.evaluate import (
        EvaluationResult,
        InferenceEngine,
        Predictions,
        benchmark_accuracy,
        evaluate_engine,
        evaluate_results_file,
        predict_engine,
        score_predictions,
        write_evaluation,
    )
    from mlcore.evaluation.memory import MemoryResult, benchmark_memory
    from mlcore.evaluation.metrics import (
        ClassAP,
        CocoScores,
        MapResult,
        compute_iou,
        compute_map,
        compute_precision_recall,
    )
    from mlcore.evaluation.report import ComparisonReport, ReportEntry, comparison_report
    from mlcore.evaluation.results import read_results, write_results
    from mlcore.evaluation.shards import Shard, ShardFile, merge_shards
    from mlcore.evaluation.speed import BatchSpeed, SpeedResult, benchmark_speed, environment
    from mlcore.evaluation.student_eval import evaluate_student
    from mlcore.evaluation.teacher_scores import evaluate_teacher, predict_teacher
