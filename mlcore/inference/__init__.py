"""Inference: one interface over PyTorch, ONNX Runtime and TensorRT, sharing the letterbox and the post-processing.

- `load_engine(path, device="auto", imgsz=None, class_names=None)`: .pt -> `PyTorchEngine`, .onnx -> `ONNXEngine`,
  .engine / .plan -> `TensorRTEngine`; each has class_names, imgsz, task, name, device and
  `predict(images, conf=, iou=, max_det=) -> list[Detections]` (original frames) and
  `predict_batch(pixel_values, metas, ...)` for batches already letterboxed.
- `postprocess_yolo(...)`: ultralytics' NMS and prototype mask decoding, mapped back out of the letterbox (the
  `Student` uses it too); `letterbox_preprocessor(imgsz)`: the shared input pipeline.
- `infer_folder(engine, source, output_dir, conf=)`: overlays plus a COCO results file (`predictions.json`).
- Metadata (class names, imgsz, task) comes from the exporter's embedded metadata, a `<model>.json` sidecar
  (`write_sidecar`) or the caller.
"""

from __future__ import annotations

from mlcore.inference.engines import ENGINE_OF_SUFFIX, ONNXEngine, PyTorchEngine, TensorRTEngine, load_engine
from mlcore.inference.folder import InferenceSummary, image_ids_from_annotations, infer_folder, result_records
from mlcore.inference.letterbox import letterbox_images, letterbox_preprocessor
from mlcore.inference.metadata import ModelMetadata, read_sidecar, sidecar_path, write_sidecar
from mlcore.inference.overlay import draw_detections
from mlcore.inference.postprocess import postprocess_yolo
from mlcore.inference.types import Detections, InferenceEngine

__all__ = [
    "ENGINE_OF_SUFFIX",
    "Detections",
    "InferenceEngine",
    "InferenceSummary",
    "ModelMetadata",
    "ONNXEngine",
    "PyTorchEngine",
    "TensorRTEngine",
    "draw_detections",
    "image_ids_from_annotations",
    "infer_folder",
    "letterbox_images",
    "letterbox_preprocessor",
    "load_engine",
    "postprocess_yolo",
    "read_sidecar",
    "result_records",
    "sidecar_path",
    "write_sidecar",
]
