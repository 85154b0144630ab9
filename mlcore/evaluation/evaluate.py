"""Evaluate a model or a results file on a labelled split: COCO box / mask mAP, per-class AP, PR curves, files.

- `evaluate_engine(engine, dataset, annotation_file, category_ids)`: any inference engine (PyTorch, ONNX, TensorRT;
  see `InferenceEngine` below), run the way ultralytics validates (conf 0.001, NMS IoU 0.7, 300 detections).
  It is `predict_engine` (records of the split, or of one `Shard` of it) then `score_predictions` (pycocotools), so
  shards predicted on several workers and merged are scored exactly as one run (mlcore.evaluation.shards).
- `evaluate_results_file(results_json, annotation_file)`: a COCO results file, scored exactly as pycocotools would.
- `write_evaluation(result, output_dir)`: metrics.json, pr_curves.json, one PR-curve PNG per IoU type and the
  predictions as a COCO results file.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from mlcore.data.coco_dataset import CocoDataset
from mlcore.evaluation.coco_map import AnnotationSource, IouType, load_annotations
from mlcore.evaluation.curves import plot_pr_curves
from mlcore.evaluation.metrics import (
    CategorySelection,
    MapResult,
    compute_map,
    ground_truth_has_masks,
    selected_categories,
)
from mlcore.evaluation.results import (Predictions, category_mapping, prediction_results, read_results,
                                      write_results)
from mlcore.evaluation.shards import Shard
from mlcore.io import write_json_atomic
from mlcore.logs import get_logger
from mlcore.preprocess import PreprocessMeta, SingleModelPreprocessor, for_model

log = get_logger(__name__)


class InferenceEngine(Protocol):
    """What evaluation needs of an engine (mlcore.inference's engines follow it; duck typing is enough).

    predict_batch gets (B, 3, S, S) float pixels 0-1 letterboxed by mlcore's YOLO preprocessing at `imgsz`, with each
    image's PreprocessMeta, and returns one prediction per image (boxes xyxy in the original frame, scores,
    class_ids, masks (n, H, W) bool or None). Where it takes `multi_label`, evaluation sets it (as ultralytics
    validates).
    """

    name: str
    class_names: list[str]
    imgsz: int
    task: str

    def predict_batch(self, pixel_values: Any, metas: Sequence[PreprocessMeta], *, conf: float, iou: float,
                      max_det: int) -> list[Any]: ...


@dataclass
class EvaluationResult:
    """What was evaluated, its scores, and the COCO records scored (boxes, masks where predicted)."""

    name: str
    scores: MapResult
    num_images: int
    results: list[dict[str, Any]] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def map50_95(self) -> float:
        return self.scores.map50_95

    @property
    def map50(self) -> float:
        return self.scores.map50

    @property
    def mask_map50_95(self) -> float | None:
        return self.scores.mask_map50_95

    @property
    def mask_map50(self) -> float | None:
        return self.scores.mask_map50

    @property
    def per_class(self) -> dict[str, dict[str, float | None]]:
        """Category name -> ap50_95, ap50 (boxes) and mask_ap50_95, mask_ap50 where masks were measured."""
        table: dict[str, dict[str, float | None]] = {}
        for name, ap in self.scores.bbox.per_class.items():
            table[name] = {"ap50_95": ap.ap50_95, "ap50": ap.ap50}
        if self.scores.segm is not None:
            for name, ap in self.scores.segm.per_class.items():
                table.setdefault(name, {}).update(mask_ap50_95=ap.ap50_95, mask_ap50=ap.ap50)
        return table

    def metrics(self) -> dict[str, float]:
        """map50_95, map50, map75 and mask_* where masks were measured."""
        return self.scores.metrics()

    def to_dict(self) -> dict[str, Any]:
        """metrics.json: the headline numbers, the settings, and pycocotools' full numbers per IoU type."""
        per_class = {name: {key: None if value is None else round(value, 6) for key, value in row.items()}
                     for name, row in self.per_class.items()}
        return {"name": self.name, "num_images": self.num_images, "num_detections": len(self.results),
                "seconds": round(self.seconds, 3), "settings": self.settings, **self.scores.to_dict(),
                "per_class": per_class}


def evaluate_engine(engine: InferenceEngine, dataset: CocoDataset, annotation_file: AnnotationSource,
                    category_ids: Mapping[str, int] | None = None, *, batch_size: int = 8, conf: float = 0.001,
                    iou: float = 0.7, max_det: int = 300, class_agnostic: bool = False,
                    progress: bool = False) -> EvaluationResult:
    """Run `engine` over `dataset` (whose annotations are `annotation_file`) and score it with pycocotools.

    Images are letterboxed here, at engine.imgsz, and given to engine.predict_batch, so every engine sees the same
    pixels. category_ids: class index ("0", ...) -> COCO category id (the mode config's); None: the engine's class
    names matched to the file's category names. Masks are scored when the engine segments and the ground truth has
    masks. class_agnostic: any class matches any object (FastSAM's single class).
    """
    annotations = load_annotations(annotation_file)
    predicted = predict_engine(engine, dataset, annotations, category_ids, batch_size=batch_size, conf=conf, iou=iou,
                               max_det=max_det, class_agnostic=class_agnostic, progress=progress)
    return score_predictions(predicted, annotations)


def predict_engine(engine: InferenceEngine, dataset: CocoDataset, annotation_file: AnnotationSource,
                   category_ids: Mapping[str, int] | None = None, *, batch_size: int = 8, conf: float = 0.001,
                   iou: float = 0.7, max_det: int = 300, class_agnostic: bool = False, progress: bool = False,
                   shard: Shard = Shard()) -> Predictions:
    """`evaluate_engine`'s predictions, unscored: of every image, or of `shard`'s (whole batches of the full run, so
    each image is predicted in the very batch it would be in unsharded)."""
    started = time.perf_counter()
    annotations = load_annotations(annotation_file)
    mapping = category_mapping(engine.class_names, annotations, category_ids, class_agnostic=class_agnostic)
    categories = _measured_categories(mapping, annotations, category_ids, class_agnostic)
    preprocessor = letterbox(int(engine.imgsz))
    options: dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det}
    if _accepts(engine.predict_batch, "multi_label"):
        options["multi_label"] = True  # as ultralytics validates: a box may count once per class above conf
    records: list[dict[str, Any]] = []
    image_ids: list[int] = []
    for indices in tqdm(shard.batches(len(dataset), batch_size), desc=f"eval {engine.name}", unit="batch",
                        disable=not progress):
        samples = [dataset[index] for index in indices]
        batch = preprocessor([sample.image_path for sample in samples])
        predictions = engine.predict_batch(batch.pixel_values, batch.meta, **options)
        for sample, prediction in zip(samples, predictions):
            records += prediction_results(sample.image_id, prediction, mapping.__getitem__)
            image_ids.append(int(sample.image_id))
    masks = engine.task == "segment" and ground_truth_has_masks(annotations, categories)
    settings = {"imgsz": int(engine.imgsz), "batch_size": batch_size, **options, "class_agnostic": class_agnostic,
                "task": engine.task, "device": str(getattr(engine, "device", "unknown")),
                "category_ids": _category_table(mapping)}
    return Predictions(engine.name, records, image_ids, categories, ["bbox", "segm"] if masks else ["bbox"],
                       class_agnostic, settings, time.perf_counter() - started)


def score_predictions(predictions: Predictions, annotation_file: AnnotationSource) -> EvaluationResult:
    """COCO mAP (pycocotools) of predictions of the whole split: one run's, or the merge of all its shards."""
    started = time.perf_counter()
    scores = compute_map(annotation_file, predictions.records, predictions.categories,
                         iou_types=predictions.iou_types, class_agnostic=predictions.class_agnostic)
    result = EvaluationResult(predictions.name, scores, predictions.num_images, predictions.records,
                              predictions.settings, predictions.seconds + time.perf_counter() - started)
    log.info("evaluated %s on %d images: mAP50-95 %.4f, mAP50 %.4f%s", result.name, result.num_images,
             result.map50_95, result.map50,
             "" if result.mask_map50_95 is None else f", mask mAP50-95 {result.mask_map50_95:.4f}")
    return result


def benchmark_accuracy(engine: InferenceEngine, dataset: CocoDataset, annotation_file: AnnotationSource,
                       category_ids: Mapping[str, int] | None = None, **options: Any) -> EvaluationResult:
    """The accuracy column of a benchmark: `evaluate_engine` with its defaults (options pass through)."""
    return evaluate_engine(engine, dataset, annotation_file, category_ids, **options)


def evaluate_results_file(results_json: str | os.PathLike[str], annotation_file: AnnotationSource,
                          category_ids: CategorySelection = None, *, iou_types: Sequence[IouType] | None = None,
                          class_agnostic: bool = False, name: str | None = None) -> EvaluationResult:
    """Score a COCO results file (what `mlcore infer`, ultralytics or detectron2 write) against annotations.

    category_ids: COCO ids to measure (None: all of the file's). The numbers are pycocotools' own on the same files
    (boxes; masks where both sides have them, mode-aware as `compute_map`).
    """
    started = time.perf_counter()
    annotations = load_annotations(annotation_file)
    records = read_results(results_json, annotations)
    scores = compute_map(annotations, records, category_ids, iou_types=iou_types, class_agnostic=class_agnostic)
    settings = {"results_file": str(results_json), "class_agnostic": class_agnostic}
    return EvaluationResult(name or Path(results_json).stem, scores, len(annotations.get("images", [])), records,
                            settings, time.perf_counter() - started)


def write_evaluation(result: EvaluationResult, output_dir: str | os.PathLike[str], *,
                     predictions: bool = True) -> dict[str, Path]:
    """Write metrics.json, pr_curves.json, pr_curve_bbox.png (+ pr_curve_segm.png) and predictions.json.

    predictions: also write the scored records as a COCO results file (skip for a results file's own evaluation).
    Returns {what: path}.
    """
    output_dir = Path(output_dir)
    written = {"metrics": output_dir / "metrics.json", "pr_curves": output_dir / "pr_curves.json"}
    write_json_atomic(written["metrics"], result.to_dict())
    curves = {"bbox": result.scores.bbox.curves}
    if result.scores.segm is not None:
        curves["segm"] = result.scores.segm.curves
    write_json_atomic(written["pr_curves"], {iou_type: [curve.to_dict() for curve in found]
                                             for iou_type, found in curves.items()})
    for iou_type, found in curves.items():
        what = "boxes" if iou_type == "bbox" else "masks"
        written[f"pr_curve_{iou_type}"] = plot_pr_curves(found, output_dir / f"pr_curve_{iou_type}.png",
                                                         title=f"{result.name}: precision-recall, {what}, IoU 0.5")
    if predictions:
        written["predictions"] = write_results(output_dir / "predictions.json", result.results)
    return written


def letterbox(imgsz: int) -> SingleModelPreprocessor:
    """mlcore's YOLO preprocessing to imgsz x imgsz (pixel-exact with ultralytics' LetterBox)."""
    return for_model("yolo", {"yolo": {"strategy": "letterbox", "longest_edge": imgsz, "pad_to": [imgsz, imgsz]}})


def _measured_categories(mapping: Mapping[int, int], annotations: Mapping[str, Any],
                         category_ids: Mapping[str, int] | None, class_agnostic: bool) -> list[int]:
    """The categories scored: the model's; class-agnostic, every one given (or the file's), since any object counts."""
    if class_agnostic:
        return selected_categories(annotations, category_ids)
    return sorted(set(mapping.values()))


def _accepts(method: Any, parameter: str) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return parameter in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _category_table(mapping: Mapping[int, int]) -> dict[str, int]:
    return {str(index): int(category) for index, category in sorted(mapping.items())}
