"""Precision-recall curves from pycocotools' accumulated precision, and their plot (PNG).

COCOeval keeps, per IoU threshold and category, the interpolated precision at 101 recall points (0, 0.01, ... 1),
already made non-increasing, and the score of the detection reached at each point. A curve here is one category's
row of that array at one IoU threshold (area "all", up to 100 detections per image), so its mean is that category's
AP at that threshold exactly as COCO computes it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.io import atomic_open

AGNOSTIC_NAME = "all classes"  # the one "category" of a class-agnostic evaluation
_MAX_LEGEND = 20


@dataclass
class PRCurve:
    """One category's precision over 101 recall points at one IoU threshold (COCO's interpolated envelope).

    scores: the confidence of the detection that reaches each recall point (0 past the last one reached);
    ap: the mean precision, i.e. COCO's AP of this category at this IoU threshold.
    """

    iou_type: str
    iou_threshold: float
    category_id: int
    name: str
    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray

    @property
    def ap(self) -> float:
        return float(self.precision.mean())

    def to_dict(self) -> dict[str, Any]:
        return {"iou_type": self.iou_type, "iou_threshold": self.iou_threshold, "category_id": self.category_id,
                "name": self.name, "ap": round(self.ap, 6),
                "recall": [round(float(v), 4) for v in self.recall],
                "precision": [round(float(v), 6) for v in self.precision],
                "scores": [round(float(v), 6) for v in self.scores]}


def curves_from_eval(evaluation: Any, names: Mapping[int, str], iou_threshold: float = 0.5) -> list[PRCurve]:
    """The PR curve of every measured category with ground truth, from an accumulated COCOeval.

    names: COCO category id -> name. Categories without ground truth (precision -1 in COCOeval) have no curve.
    """
    thresholds = np.asarray(evaluation.params.iouThrs)
    matches = np.flatnonzero(np.isclose(thresholds, iou_threshold))
    if not len(matches):
        raise ValueError(f"iou_threshold {iou_threshold} is not one of COCO's thresholds "
                         f"{[round(float(t), 2) for t in thresholds]}")
    t = int(matches[0])
    precision = evaluation.eval["precision"][t, :, :, 0, -1]  # (recall points, categories), area all, 100 dets
    scores = evaluation.eval["scores"][t, :, :, 0, -1]
    recall = np.asarray(evaluation.params.recThrs, dtype=np.float64)
    agnostic = not evaluation.params.useCats
    categories = [-1] if agnostic else list(evaluation.params.catIds)
    curves = []
    for k, category_id in enumerate(categories):
        if (precision[:, k] < 0).all():
            continue
        curves.append(PRCurve(iou_type=evaluation.params.iouType, iou_threshold=float(thresholds[t]),
                              category_id=int(category_id),
                              name=AGNOSTIC_NAME if agnostic else names.get(int(category_id), str(category_id)),
                              recall=recall.copy(), precision=np.clip(precision[:, k], 0.0, None).astype(np.float64),
                              scores=np.clip(scores[:, k], 0.0, None).astype(np.float64)))
    return curves


def plot_pr_curves(curves: Sequence[PRCurve], path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write one PNG with every curve (AP in the legend) and their mean, the way detection papers show them.

    Drawn on matplotlib's Agg canvas directly, so no global backend is switched (safe inside a notebook).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for curve in curves:
        label = f"{curve.name} {curve.ap:.3f}" if len(curves) <= _MAX_LEGEND else None
        axes.plot(curve.recall, curve.precision, linewidth=1, label=label)
    if curves:
        mean = np.mean([curve.precision for curve in curves], axis=0)
        threshold = curves[0].iou_threshold
        axes.plot(curves[0].recall, mean, color="black", linewidth=3,
                  label=f"all classes {float(mean.mean()):.3f} mAP@{threshold:.2f}")
        axes.legend(loc="lower left", fontsize=8)
    else:
        axes.text(0.5, 0.5, "nothing to measure", ha="center", va="center")
    iou_type = curves[0].iou_type if curves else ""
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=title or f"precision-recall ({'masks' if iou_type == 'segm' else 'boxes'})")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path
