"""Raw YOLOv8 / YOLOv8-seg outputs -> `Detections` in each original frame, the same way for every engine.

Every runtime (PyTorch, ONNX Runtime, TensorRT) yields the same two arrays for an ultralytics model: `decoded`
(B, 4 + nc [+ nm], N) with xywh boxes in the letterboxed input frame and per-class scores (then nm mask
coefficients for segmentation), and for segmentation `protos` (B, nm, h, w).

Two routes to the same detections:
- host arrays (numpy, or torch tensors on the CPU): `nms.non_max_suppression` and `mask_decode` in numpy, which
  follow ultralytics' `non_max_suppression` / `process_mask` arithmetic without torch, ultralytics' settings or
  full-canvas masks (boxes, scores and classes equal; masks equal but for rare pixels whose logit is within float
  rounding of 0: see `mask_decode`);
- tensors on a GPU: `postprocess_yolo_reference`, ultralytics' own functions on the device, then the letterbox maps.
The reference route is also what the tests hold the numpy route to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlcore.preprocess import PreprocessMeta
from mlcore.students.mask_decode import masks_in_original_frame
from mlcore.students.nms import non_max_suppression
from mlcore.students.types import StudentPrediction
from mlcore.students.ultralytics_setup import configure_ultralytics

_MASK_CHUNK = 32


def postprocess_yolo(decoded: Any, protos: Any, metas: Sequence[PreprocessMeta], *, input_size: tuple[int, int],
                     num_classes: int, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                     multi_label: bool = False) -> list[StudentPrediction]:
    """NMS, mask assembly and the map back to each original image; one StudentPrediction per image.

    decoded / protos: numpy arrays or torch tensors (protos None for detection). input_size: (H, W) of the
    letterboxed batch; multi_label: a box may be kept once per class scoring above conf (ultralytics' validation
    does this).
    """
    if _on_accelerator(decoded) or _on_accelerator(protos):
        return postprocess_yolo_reference(decoded, protos, metas, input_size=input_size, num_classes=num_classes,
                                          conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
    decoded = _host_array(decoded)
    protos = None if protos is None else _host_array(protos)
    if decoded.ndim != 3 or decoded.shape[0] != len(metas):
        raise ValueError(f"need (B, channels, anchors) outputs and B metas, got {tuple(decoded.shape)} and "
                         f"{len(metas)} metas")
    results = []
    for index, meta in enumerate(metas):
        found = non_max_suppression(decoded[index], num_classes=num_classes, conf=conf, iou=iou, max_det=max_det,
                                    multi_label=multi_label)
        boxes = meta.boxes_from_model(found[:, :4])
        scores, class_ids = found[:, 4], found[:, 5].astype(np.int64)
        masks = None
        if protos is not None:
            masks = masks_in_original_frame(protos[index], found[:, 6:], found[:, :4], input_size, meta)
            keep = masks.any(axis=(1, 2))  # as ultralytics' predictor: a detection needs its mask
            if not keep.all():
                boxes, scores, class_ids, masks = boxes[keep], scores[keep], class_ids[keep], masks[keep]
        results.append(StudentPrediction(
            boxes=torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            scores=torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)),
            class_ids=torch.from_numpy(np.ascontiguousarray(class_ids)),
            masks=None if masks is None else torch.from_numpy(masks), image_size=meta.original_size))
    return results


def postprocess_yolo_reference(decoded: torch.Tensor | np.ndarray, protos: torch.Tensor | np.ndarray | None,
                               metas: Sequence[PreprocessMeta], *, input_size: tuple[int, int], num_classes: int,
                               conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                               multi_label: bool = False) -> list[StudentPrediction]:
    """ultralytics' own `non_max_suppression` and `process_mask(upsample=True)` on the tensors' device, then
    `PreprocessMeta.boxes_from_model` / `masks_from_model`: the route the numpy one is measured against."""
    configure_ultralytics()
    from ultralytics.utils.nms import non_max_suppression as ultralytics_nms

    decoded = torch.as_tensor(decoded)
    protos = None if protos is None else torch.as_tensor(protos)
    if decoded.dim() != 3 or decoded.shape[0] != len(metas):
        raise ValueError(f"need (B, channels, anchors) outputs and B metas, got {tuple(decoded.shape)} and "
                         f"{len(metas)} metas")
    detections = ultralytics_nms(decoded.float(), conf, iou, multi_label=multi_label, max_det=max_det,
                                 nc=num_classes)
    results = []
    for index, (found, meta) in enumerate(zip(detections, metas)):
        masks = None
        if protos is not None:
            masks = original_frame_masks(protos[index], found[:, 6:], found[:, :4], input_size, meta)
        found = found.float().cpu()
        boxes, scores, class_ids = meta.boxes_from_model(found[:, :4]), found[:, 4], found[:, 5].long()
        if masks is not None:
            keep = masks.flatten(1).any(1)  # as ultralytics' predictor: a detection needs its mask
            boxes, scores, class_ids, masks = boxes[keep], scores[keep], class_ids[keep], masks[keep]
        results.append(StudentPrediction(boxes=boxes, scores=scores, class_ids=class_ids, masks=masks,
                                         image_size=meta.original_size))
    return results


def original_frame_masks(protos: torch.Tensor, coefficients: torch.Tensor, boxes_model: torch.Tensor,
                         input_size: tuple[int, int], meta: PreprocessMeta) -> torch.Tensor:
    """(n, H, W) bool masks in the original frame: ultralytics' process_mask (input frame, cropped to the box), then
    out of the letterbox; in chunks, since each mask passes through float at input and original size."""
    from ultralytics.utils.ops import process_mask

    chunks = [meta.masks_from_model(process_mask(protos, coefficients[start:start + _MASK_CHUNK],
                                                 boxes_model[start:start + _MASK_CHUNK], input_size,
                                                 upsample=True).float(), threshold=0.5).cpu()
              for start in range(0, coefficients.shape[0], _MASK_CHUNK)]
    return torch.cat(chunks) if chunks else torch.zeros((0, *meta.original_size), dtype=torch.bool)


def _on_accelerator(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


def _host_array(value: Any) -> np.ndarray:
    """float32 numpy view of a CPU tensor or array (a copy only when the dtype differs)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        value = value.float() if value.dtype != torch.float32 else value
        return value.numpy()
    return np.asarray(value, dtype=np.float32)
