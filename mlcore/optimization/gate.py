"""The accuracy gate: a quantized model is kept only when it scores within max_drop mAP points of the float one.

Both models are evaluated the same way, on the same validation split (`mlcore.inference.load_engine` +
`mlcore.evaluation.evaluate_engine`), and the decision is a small record that says which file to ship and why.
Scores are compared in points on a 0-100 scale (pycocotools' 0-1 times 100), as the config's max_drop is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcore.config.schemas.optimization import AccuracyGate
from mlcore.errors import ConfigError, ModelError
from mlcore.logs import get_logger

log = get_logger(__name__)

# path -> metrics {"map50_95": 0.41, ...} on pycocotools' 0-1 scale
Evaluator = Callable[[Path], Mapping[str, float | None]]


@dataclass(frozen=True)
class GateDecision:
    """The comparison and its outcome. Values and drop are mAP points (0-100); kept_path: the file to ship."""

    metric: str
    float_value: float
    quantized_value: float
    drop: float
    threshold: float
    passed: bool
    kept_path: Path
    reason: str
    on_fail: str
    float_path: Path
    quantized_path: Path

    @property
    def kept_quantized(self) -> bool:
        return self.kept_path == self.quantized_path

    def enforce(self) -> None:
        """Raise ModelError when the gate failed and on_fail is "fail"."""
        if not self.passed and self.on_fail == "fail":
            raise ModelError(self.reason, where=str(self.quantized_path),
                             fix="raise accuracy_gate.max_drop, calibrate on more / more representative images, "
                                 "try calibration.method entropy or percentile, or ship the float model")

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "float_value": round(self.float_value, 4),
                "quantized_value": round(self.quantized_value, 4), "drop": round(self.drop, 4),
                "threshold": self.threshold, "passed": self.passed, "kept": self.kept_path.name,
                "kept_path": str(self.kept_path), "kept_quantized": self.kept_quantized, "on_fail": self.on_fail,
                "reason": self.reason, "float_path": str(self.float_path), "quantized_path": str(self.quantized_path)}


def decide(metric: str, float_value: float, quantized_value: float, *, float_path: str | os.PathLike[str],
           quantized_path: str | os.PathLike[str], max_drop: float = 1.0,
           on_fail: str = "keep_higher_precision") -> GateDecision:
    """The decision for two scores in points. Passes when float_value - quantized_value <= max_drop.

    on_fail: keep_higher_precision (ship the float model), warn (ship the quantized one anyway) or fail (ship the
    float one; `enforce()` raises).
    """
    if on_fail not in ("keep_higher_precision", "fail", "warn"):
        raise ConfigError(f"unknown on_fail {on_fail!r}", where="accuracy_gate.on_fail",
                          fix="use keep_higher_precision, fail or warn")
    float_path, quantized_path = Path(float_path), Path(quantized_path)
    drop = float_value - quantized_value
    passed = drop <= max_drop
    scores = (f"{metric} {quantized_value:.2f} quantized vs {float_value:.2f} float: a drop of {drop:.2f} points "
              f"(allowed {max_drop:g})")
    if passed:
        kept, reason = quantized_path, f"passed: {scores}; keeping {quantized_path.name}"
    elif on_fail == "warn":
        kept, reason = quantized_path, f"failed: {scores}; keeping {quantized_path.name} anyway (on_fail: warn)"
    elif on_fail == "fail":
        kept, reason = float_path, f"failed: {scores}; stopping (on_fail: fail)"
    else:
        kept, reason = float_path, (f"failed: {scores}; keeping the higher-precision {float_path.name} instead "
                                    f"(on_fail: keep_higher_precision)")
    (log.info if passed else log.warning)("accuracy gate %s", reason)
    return GateDecision(metric=metric, float_value=float_value, quantized_value=quantized_value, drop=drop,
                        threshold=max_drop, passed=passed, kept_path=kept, reason=reason, on_fail=on_fail,
                        float_path=float_path, quantized_path=quantized_path)


def accuracy_gate(float_path: str | os.PathLike[str], quantized_path: str | os.PathLike[str],
                  val_annotations: str | os.PathLike[str] | None = None, *,
                  val_images: str | os.PathLike[str] | None = None, gate: AccuracyGate | None = None,
                  category_ids: Mapping[str, int] | None = None, batch_size: int = 8,
                  evaluate: Evaluator | None = None) -> GateDecision:
    """Evaluate both model files on the validation split and decide (see `decide`).

    val_annotations / val_images: the split's COCO file and image folder (found beside the file when None).
    evaluate: path -> metrics on a 0-1 scale; default `evaluate_model_file` on the split.
    """
    gate = gate or AccuracyGate()
    if evaluate is None:
        if val_annotations is None:
            raise ConfigError("the accuracy gate needs a validation split", where="accuracy_gate",
                              fix="pass the validation COCO file (--val-data), or disable accuracy_gate")

        def evaluate(path: Path) -> Mapping[str, float | None]:
            return evaluate_model_file(path, val_annotations, val_images=val_images, category_ids=category_ids,
                                       batch_size=batch_size)

    float_path, quantized_path = Path(float_path), Path(quantized_path)
    float_value = _points(evaluate(float_path), gate.metric, float_path)
    quantized_value = _points(evaluate(quantized_path), gate.metric, quantized_path)
    return decide(gate.metric, float_value, quantized_value, float_path=float_path, quantized_path=quantized_path,
                  max_drop=gate.max_drop, on_fail=gate.on_fail)


def evaluate_model_file(path: str | os.PathLike[str], val_annotations: str | os.PathLike[str], *,
                        val_images: str | os.PathLike[str] | None = None,
                        category_ids: Mapping[str, int] | None = None, batch_size: int = 8,
                        class_agnostic: bool | None = None) -> dict[str, float]:
    """COCO metrics (0-1) of a model file (.pt / .onnx / .engine) on a split, on CPU unless the runtime has CUDA.

    class_agnostic None: True for a one-class model (FastSAM) measured on a file with several categories.
    """
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.evaluation.evaluate import evaluate_engine
    from mlcore.inference.engines import load_engine

    engine = load_engine(path)
    dataset = CocoDataset(val_annotations, val_images)
    if class_agnostic is None:
        class_agnostic = len(engine.class_names) == 1 and len(dataset.categories) > 1
    result = evaluate_engine(engine, dataset, val_annotations, category_ids, batch_size=batch_size,
                             class_agnostic=class_agnostic)
    return {key: float(value) for key, value in result.metrics().items() if value is not None}


def _points(metrics: Mapping[str, float | None], metric: str, path: Path) -> float:
    value = metrics.get(metric)
    if value is None:
        known = ", ".join(sorted(key for key, value in metrics.items() if value is not None))
        raise ConfigError(f"the evaluation of {path.name} has no {metric!r}", where="accuracy_gate.metric",
                          fix=f"use one of: {known}")
    return 100.0 * float(value)


__all__ = ["Evaluator", "GateDecision", "accuracy_gate", "decide", "evaluate_model_file"]
