"""YOLOv8 non-maximum suppression on host arrays: ultralytics' `non_max_suppression`, step for step, in numpy around
torchvision's NMS kernel (no ultralytics settings, no device moves, no per-call set-up).

The same arithmetic in the same float32 order: candidates whose best class score passes conf, xywh -> xyxy, one row
per box (best class) or per passing class (multi_label), at most max_nms rows by score, class offsets of max_wh so
that classes never suppress each other, `torchvision.ops.nms` (ultralytics' route whenever torchvision is imported,
as its predictor does), the first max_det kept. Equal scores (INT8 models give many) are taken in anchor order, as
torchvision's CPU kernel sorts stably.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

MAX_NMS = 30000  # ultralytics' max_nms: at most this many boxes by score enter the suppression
MAX_WH = 7680  # ultralytics' max_wh: the per-class coordinate offset


def non_max_suppression(prediction: np.ndarray, *, num_classes: int, conf: float, iou: float, max_det: int = 300,
                        multi_label: bool = False) -> np.ndarray:
    """One image's (4 + nc + extra, N) decoded outputs -> (k, 6 + extra) float32 rows: x1, y1, x2, y2 (input
    frame), score, class, extra (mask coefficients), best first."""
    prediction = np.asarray(prediction, dtype=np.float32)
    channels = prediction.shape[0]
    scores_end = 4 + num_classes
    best = prediction[4:scores_end].max(0) if num_classes else np.zeros(prediction.shape[1], np.float32)
    candidates = np.flatnonzero(best > conf)
    if not candidates.size:
        return np.zeros((0, channels + 2 - num_classes), dtype=np.float32)
    rows = prediction[:, candidates].T  # (k, channels), a copy
    boxes = xywh_to_xyxy(rows[:, :4])
    extra = rows[:, scores_end:]
    if multi_label and num_classes > 1:
        index, class_id = np.nonzero(rows[:, 4:scores_end] > conf)
        found = np.concatenate([boxes[index], rows[index, 4 + class_id, None],
                                class_id[:, None].astype(np.float32), extra[index]], axis=1)
    else:
        class_id = rows[:, 4:scores_end].argmax(1)
        found = np.concatenate([boxes, best[candidates, None], class_id[:, None].astype(np.float32), extra], axis=1)
    if found.shape[0] > MAX_NMS:
        found = found[descending(found[:, 4])[:MAX_NMS]]
    keep = greedy_nms(found[:, :4] + found[:, 5:6] * MAX_WH, found[:, 4], iou, max_det)
    return found[keep]


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """ultralytics' xywh2xyxy: centre minus / plus half the size."""
    out = np.empty_like(boxes)
    half = boxes[:, 2:] / 2
    out[:, :2] = boxes[:, :2] - half
    out[:, 2:] = boxes[:, :2] + half
    return out


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_keep: int) -> np.ndarray:
    """Indices of the kept boxes, best score first: torchvision.ops.nms (ultralytics' own route) on zero-copy views."""
    keep = torchvision.ops.nms(torch.from_numpy(np.ascontiguousarray(boxes)),
                               torch.from_numpy(np.ascontiguousarray(scores)), float(iou))
    return keep[:max_keep].numpy()


def descending(scores: np.ndarray) -> np.ndarray:
    """Indices by score, best first, equal scores in index order (a stable sort, as torchvision's)."""
    return np.argsort(-scores, kind="stable")
