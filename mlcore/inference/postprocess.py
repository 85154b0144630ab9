"""Raw YOLOv8 / YOLOv8-seg outputs -> `Detections` in each original frame, the same way for every engine.

Every runtime (PyTorch, ONNX Runtime, TensorRT) yields the same two tensors for an ultralytics model: `decoded`
(B, 4 + nc [+ nm], N) with xywh boxes in the letterboxed input frame and per-class scores (then nm mask
coefficients for segmentation), and for segmentation `protos` (B, nm, h, w). From there ultralytics' own
`non_max_suppression` and `process_mask` do the work, and the letterbox meta maps boxes and masks back out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlcore.preprocess import PreprocessMeta
from mlcore.students.types import StudentPrediction
from mlcore.students.ultralytics_setup import configure_ultralytics

_MASK_CHUNK = 32


def postprocess_yolo(decoded: torch.Tensor, protos: torch.Tensor | None, metas: Sequence[PreprocessMeta], *,
                     input_size: tuple[int, int], num_classes: int, conf: float = 0.25, iou: float = 0.7,
                     max_det: int = 300, multi_label: bool = False) -> list[StudentPrediction]:
    """NMS, mask assembly and the map back to each original image; one StudentPrediction per image.

    input_size: (H, W) of the letterboxed batch; multi_label: a box may be kept once per class scoring above conf
    (ultralytics' validation does this).
    """
    configure_ultralytics()
    from ultralytics.utils.nms import non_max_suppression

    if decoded.dim() != 3 or decoded.shape[0] != len(metas):
        raise ValueError(f"need (B, channels, anchors) outputs and B metas, got {tuple(decoded.shape)} and "
                         f"{len(metas)} metas")
    detections = non_max_suppression(decoded.float(), conf, iou, multi_label=multi_label, max_det=max_det,
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
