"""COCO mAP of a set of results, box and mask, overall and per class; mask IoU.

- `compute_map(annotation_file, results, category_ids)` -> `MapResult`: pycocotools' numbers (mAP50-95, mAP50,
  mAP75, all 12 summary stats), per-class AP by category name and the PR curves at IoU 0.5, for boxes and, when the
  ground truth has masks and the results carry segmentations, for masks too.
- `compute_precision_recall(...)` -> PR curves per class at any of COCO's IoU thresholds.
- `compute_iou(mask_a, mask_b)`: one IoU for two masks, an (n, m) matrix for two stacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcore.evaluation.coco_map import (
    IOU_TYPES,
    AnnotationSource,
    IouType,
    has_mask,
    load_annotations,
    run_coco_eval,
)
from mlcore.evaluation.curves import AGNOSTIC_NAME, PRCurve, curves_from_eval

CategorySelection = Iterable[int] | Mapping[str, int] | None
_IOU_CHUNK_PIXELS = 1 << 26  # float32 pixels per chunk of the pairwise IoU product (256 MB)


@dataclass
class ClassAP:
    """One category's AP; None where it has no ground truth to measure (as COCO's -1)."""

    category_id: int
    name: str
    num_ground_truth: int
    ap50_95: float | None
    ap50: float | None
    ap75: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"category_id": self.category_id, "num_ground_truth": self.num_ground_truth,
                "ap50_95": _rounded(self.ap50_95), "ap50": _rounded(self.ap50), "ap75": _rounded(self.ap75)}


@dataclass
class CocoScores:
    """pycocotools' scores of one IoU type ("bbox" or "segm").

    stats: COCO's 12 summary numbers as pycocotools prints them (-1: nothing to measure in that size range);
    the headline fields are stats[0:3] with -1 read as 0. curves: PR curves per class at IoU 0.5.
    """

    iou_type: str
    map50_95: float
    map50: float
    map75: float
    stats: list[float]
    per_class: dict[str, ClassAP]
    curves: list[PRCurve] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"map50_95": _rounded(self.map50_95), "map50": _rounded(self.map50), "map75": _rounded(self.map75),
                "stats": [_rounded(v) for v in self.stats],
                "per_class": {name: ap.to_dict() for name, ap in self.per_class.items()}}


@dataclass
class MapResult:
    """Box scores, and mask scores where masks were measured; class_agnostic: categories were ignored."""

    bbox: CocoScores
    segm: CocoScores | None
    class_agnostic: bool = False

    @property
    def map50_95(self) -> float:
        return self.bbox.map50_95

    @property
    def map50(self) -> float:
        return self.bbox.map50

    @property
    def map75(self) -> float:
        return self.bbox.map75

    @property
    def mask_map50_95(self) -> float | None:
        return self.segm.map50_95 if self.segm else None

    @property
    def mask_map50(self) -> float | None:
        return self.segm.map50 if self.segm else None

    @property
    def mask_map75(self) -> float | None:
        return self.segm.map75 if self.segm else None

    def metrics(self) -> dict[str, float]:
        """The headline numbers, flat: map50_95, map50, map75 and mask_* where masks were measured."""
        flat = {"map50_95": self.map50_95, "map50": self.map50, "map75": self.map75}
        if self.segm is not None:
            flat.update(mask_map50_95=self.segm.map50_95, mask_map50=self.segm.map50, mask_map75=self.segm.map75)
        return flat

    def to_dict(self) -> dict[str, Any]:
        return {**{key: _rounded(value) for key, value in self.metrics().items()},
                "class_agnostic": self.class_agnostic,
                "bbox": self.bbox.to_dict(), "segm": self.segm.to_dict() if self.segm else None}


def compute_map(annotation_file: AnnotationSource, results: Sequence[Mapping[str, Any]],
                category_ids: CategorySelection = None, *, iou_types: Sequence[IouType] | None = None,
                class_agnostic: bool = False) -> MapResult:
    """COCO mAP of `results` (COCO detection records) against the annotation file (path or loaded dict).

    category_ids: the COCO category ids measured (or the mode config's {"index": id}; None: every category in the
    file). iou_types: None is mode-aware: "bbox" always, plus "segm" when the measured ground truth has masks and the
    results carry segmentations; "bbox" is always computed. class_agnostic: predictions match objects of any
    category (pycocotools' useCats=0); per_class then has one entry, "all classes".
    """
    data = load_annotations(annotation_file)
    categories = selected_categories(data, category_ids)
    if iou_types is None:
        masks = ground_truth_has_masks(data, categories) and _carry_masks(results)
        iou_types = ["bbox", "segm"] if masks else ["bbox"]
    unknown = set(iou_types) - set(IOU_TYPES)
    if unknown:
        raise ValueError(f"iou_types must be among {IOU_TYPES}, got {sorted(unknown)}")
    segm = _scores(data, results, categories, "segm", class_agnostic) if "segm" in iou_types else None
    return MapResult(bbox=_scores(data, results, categories, "bbox", class_agnostic), segm=segm,
                     class_agnostic=class_agnostic)


def compute_precision_recall(annotation_file: AnnotationSource, results: Sequence[Mapping[str, Any]],
                             category_ids: CategorySelection = None, *, iou_type: IouType = "bbox",
                             iou_threshold: float = 0.5, class_agnostic: bool = False) -> list[PRCurve]:
    """PR curves per class (those with ground truth) at one of COCO's IoU thresholds (0.5, 0.55, ... 0.95)."""
    data = load_annotations(annotation_file)
    categories = selected_categories(data, category_ids)
    evaluation = run_coco_eval(data, results, categories, iou_type, class_agnostic=class_agnostic)
    if evaluation is None:
        return []
    return curves_from_eval(evaluation, category_names(data), iou_threshold)


def compute_iou(mask_a: Any, mask_b: Any) -> float | np.ndarray:
    """Intersection over union of binary masks (numpy or torch; nonzero is foreground).

    Two (H, W) masks -> a float; an (n, H, W) and an (m, H, W) stack -> (n, m) array of every pair; a mask and a
    stack -> (m,) or (n,). Two empty masks have IoU 0 (as pycocotools).
    """
    a, b = _as_bool(mask_a), _as_bool(mask_b)
    if a.shape[-2:] != b.shape[-2:] or a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (n, H, W) of one size, got {a.shape} and {b.shape}")
    flat_a, flat_b = a.reshape(-1, a.shape[-2] * a.shape[-1]), b.reshape(-1, b.shape[-2] * b.shape[-1])
    area_b = flat_b.sum(1, dtype=np.int64)
    matrix = np.zeros((len(flat_a), len(flat_b)), dtype=np.float64)
    rows = max(1, _IOU_CHUNK_PIXELS // max(flat_a.shape[1], 1))
    right = flat_b.T.astype(np.float32)
    for start in range(0, len(flat_a), rows):
        part = flat_a[start:start + rows]
        intersection = np.rint(part.astype(np.float32) @ right).astype(np.int64)
        union = part.sum(1, dtype=np.int64)[:, None] + area_b[None, :] - intersection
        matrix[start:start + rows] = np.divide(intersection, union, out=np.zeros(union.shape), where=union > 0)
    if a.ndim == 2 and b.ndim == 2:
        return float(matrix[0, 0])
    if a.ndim == 2:
        return matrix[0]
    if b.ndim == 2:
        return matrix[:, 0]
    return matrix


def selected_categories(data: Mapping[str, Any], category_ids: CategorySelection) -> list[int]:
    """Sorted COCO category ids to measure: those given (ids, or a mode config's {"index": id}), else the file's."""
    if category_ids is None:
        return sorted(int(category["id"]) for category in data.get("categories", []))
    if isinstance(category_ids, Mapping):
        category_ids = category_ids.values()
    return sorted({int(category) for category in category_ids})


def category_names(data: Mapping[str, Any]) -> dict[int, str]:
    """COCO category id -> name (the id as text where a category has no name)."""
    return {int(category["id"]): str(category.get("name") or category["id"])
            for category in data.get("categories", [])}


def _scores(data: Mapping[str, Any], results: Sequence[Mapping[str, Any]], categories: list[int], iou_type: IouType,
            class_agnostic: bool) -> CocoScores:
    names = category_names(data)
    counts = _ground_truth_counts(data, categories, iou_type)
    evaluation = run_coco_eval(data, results, categories, iou_type, class_agnostic=class_agnostic)
    if class_agnostic:
        entries = [(-1, AGNOSTIC_NAME, sum(counts.values()))]
    else:
        entries = [(category, names.get(category, str(category)), counts.get(category, 0)) for category in categories]
    if evaluation is None:  # no results, or no ground truth: AP 0 where there was something to find
        per_class = {name: ClassAP(category, name, count, *(3 * [0.0 if count else None]))
                     for category, name, count in entries}
        empty = 0.0 if any(counts.values()) else -1.0
        return CocoScores(iou_type, 0.0, 0.0, 0.0, [empty] * 12, per_class)
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, K), area all, 100 dets
    per_class = {}
    for k, (category, name, count) in enumerate(entries):
        values = precision[:, :, k]
        per_class[name] = ClassAP(category, name, count, _mean_ap(values), _mean_ap(values[0]), _mean_ap(values[5]))
    stats = [float(value) for value in evaluation.stats]
    return CocoScores(iou_type, max(stats[0], 0.0), max(stats[1], 0.0), max(stats[2], 0.0), stats, per_class,
                      curves_from_eval(evaluation, names, 0.5))


def _mean_ap(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _ground_truth_counts(data: Mapping[str, Any], categories: list[int], iou_type: IouType) -> dict[int, int]:
    wanted = set(categories)
    counts = dict.fromkeys(categories, 0)
    for annotation in data.get("annotations", []):
        category = int(annotation["category_id"])
        if category in wanted and not annotation.get("iscrowd") and (iou_type == "bbox" or has_mask(annotation)):
            counts[category] += 1
    return counts


def ground_truth_has_masks(data: Mapping[str, Any], categories: Iterable[int]) -> bool:
    """Whether any object of these categories in the annotation dict has a mask."""
    wanted = set(categories)
    return any(int(annotation["category_id"]) in wanted and has_mask(annotation)
               for annotation in data.get("annotations", []))


def _carry_masks(results: Sequence[Mapping[str, Any]]) -> bool:
    return any(result.get("segmentation") is not None for result in results)


def _as_bool(mask: Any) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask) != 0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
