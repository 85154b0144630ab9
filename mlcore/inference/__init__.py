"""Inference: one interface over PyTorch, ONNX Runtime and TensorRT, sharing the letterbox and the post-processing.

- `load_engine(path, device="auto", imgsz=None, class_names=None)`: .pt -> `PyTorchEngine`, .onnx -> `ONNXEngine`,
  .engine / .plan -> `TensorRTEngine`; each has class_names, imgsz, task, name, device and
  `predict(images, conf=, iou=, max_det=) -> list[Detections]` (original frames) and
  `predict_batch(pixel_values, metas, ...)` for batches already letterboxed.
- `postprocess_yolo(...)` (from `mlcore.students.postprocess`, the `Student` uses it too): NMS and prototype mask
  decoding as ultralytics does them (in numpy on the CPU, its own functions on a GPU), mapped back out of the
  letterbox; `letterbox_preprocessor(imgsz)` / `yolo_letterbox(imgsz)` (from `mlcore.preprocess.yolo_letterbox`):
  the shared input pipeline (torch / numpy + cv2, the same numbers).
- `infer_folder(engine, source, output_dir, conf=)`: overlays plus a COCO results file (`predictions.json`); batched
  engine calls, with decoding and writing overlapped with the model on worker threads.
- Metadata (class names, imgsz, task) comes from the exporter's embedded metadata, a `<model>.json` sidecar
  (`write_sidecar`) or the caller.
"""

from __future__ import annotations

from mlcore.inference.engines import ENGINE_OF_SUFFIX, ONNXEngine, PyTorchEngine, TensorRTEngine, load_engine
from mlcore.inference.folder import InferenceSummary, image_ids_from_annotations, infer_folder, result_records
from mlcore.inference.metadata import ModelMetadata, read_sidecar, sidecar_path, write_sidecar
from mlcore.inference.overlay import draw_detections
from mlcore.inference.types import Detections, InferenceEngine
from mlcore.preprocess.yolo_letterbox import letterbox_images, letterbox_preprocessor, yolo_letterbox
from mlcore.students.postprocess import postprocess_yolo

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
    "yolo_letterbox",
]
