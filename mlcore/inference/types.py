"""What every inference engine returns and promises: `Detections` per image, and the `InferenceEngine` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from mlcore.preprocess import PreprocessMeta
from mlcore.preprocess.inputs import ImageInput
from mlcore.students.types import StudentPrediction

# One image's detections in its original pixel frame: boxes xyxy, scores, class_ids, masks (segment) or None.
Detections = StudentPrediction
Task = Literal["detect", "segment"]
TASKS: tuple[str, ...] = ("detect", "segment")


@runtime_checkable
class InferenceEngine(Protocol):
    """A model behind one interface, whatever runs it (PyTorch, ONNX Runtime, TensorRT).

    class_names: index -> name; imgsz: the square letterbox size the model takes; task: detect | segment;
    name: a short label for reports ("onnx:model.int8.onnx"); device: where it runs ("cpu", "cuda:0").
    """

    class_names: list[str]
    imgsz: int
    task: str
    name: str
    device: str

    def predict(self, images: ImageInput | Sequence[ImageInput], *, conf: float = 0.25, iou: float = 0.7,
                max_det: int = 300) -> list[Detections]:
        """One image or a list (paths, RGB arrays, PIL images) -> one Detections per image, original frames."""
        ...

    def predict_batch(self, pixel_values: Any, metas: Sequence[PreprocessMeta], *, conf: float = 0.25,
                      iou: float = 0.7, max_det: int = 300, multi_label: bool = False) -> list[Detections]:
        """An already letterboxed (B, 3, S, S) 0-1 batch (numpy or torch) with each image's meta."""
        ...
