"""What the engines share: predict = letterbox + the runtime's forward + shared post-processing; batch splitting.

`predict` letterboxes into a float32 array the engine keeps for the calling thread (reused while the batch is at
most REUSED_BATCH images), so a stream of images allocates no new input canvas per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import torch

from mlcore.errors import ModelError
from mlcore.inference.types import Detections
from mlcore.preprocess import PreprocessMeta
from mlcore.preprocess.inputs import ImageInput, is_batch, load_rgb
from mlcore.preprocess.yolo_letterbox import yolo_letterbox
from mlcore.students.postprocess import postprocess_yolo

Array = Union[np.ndarray, torch.Tensor]
RawOutputs = tuple[Array, Union[Array, None]]  # decoded (B, C, N), protos (B, nm, h, w) or None
REUSED_BATCH = 16  # larger batches get a fresh array, so an engine does not hold a big one for good


class EngineBase:
    """Subclasses set class_names, imgsz, task, name, device and implement `_forward(pixels) -> (decoded, protos)`."""

    class_names: list[str]
    imgsz: int
    task: str
    name: str
    device: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, task={self.task!r}, imgsz={self.imgsz}, device={self.device!r})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict(self, images: ImageInput | Sequence[ImageInput], *, conf: float = 0.25, iou: float = 0.7,
                max_det: int = 300) -> list[Detections]:
        """One image or a list (paths, (H, W, 3) uint8 RGB arrays, PIL images) -> one Detections per image.

        Results are in each image's own pixel frame.
        """
        rgbs = [load_rgb(image) for image in (images if is_batch(images) else [images])]
        if not rgbs:
            return []
        pixels, metas = yolo_letterbox(self.imgsz)(rgbs, out=self._input_canvas(len(rgbs)))
        return self.predict_batch(pixels, metas, conf=conf, iou=iou, max_det=max_det)

    def predict_batch(self, pixel_values: np.ndarray | torch.Tensor, metas: Sequence[PreprocessMeta], *,
                      conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                      multi_label: bool = False) -> list[Detections]:
        """Detections for a batch already letterboxed to imgsz ((B, 3, S, S), pixels 0-1) with each image's meta.

        multi_label: a box may be kept once per class scoring above conf (ultralytics' validation does this).
        """
        pixels = check_batch(pixel_values, metas, self.imgsz)
        decoded, protos = self._forward(pixels)
        return postprocess_yolo(decoded, protos, metas, input_size=(self.imgsz, self.imgsz),
                                num_classes=self.num_classes, conf=conf, iou=iou, max_det=max_det,
                                multi_label=multi_label)

    def _forward(self, pixels: torch.Tensor) -> RawOutputs:
        raise NotImplementedError

    def _input_canvas(self, count: int) -> np.ndarray | None:
        """This thread's reusable (>= count, 3, S, S) float32 array; None (allocate per call) past REUSED_BATCH."""
        if count > REUSED_BATCH:
            return None
        local = self.__dict__.setdefault("_canvases", threading.local())  # setdefault: one winner across threads
        canvas = getattr(local, "pixels", None)
        if canvas is None or canvas.shape[0] < count or canvas.shape[-1] != self.imgsz:
            canvas = np.empty((count, 3, self.imgsz, self.imgsz), dtype=np.float32)
            local.pixels = canvas
        return canvas


def check_batch(pixel_values: np.ndarray | torch.Tensor, metas: Sequence[PreprocessMeta], imgsz: int) -> torch.Tensor:
    """(B, 3, imgsz, imgsz) float tensor with B metas, or a ValueError saying what came instead."""
    pixels = torch.from_numpy(np.asarray(pixel_values)) if not isinstance(pixel_values, torch.Tensor) else pixel_values
    if pixels.dim() != 4 or pixels.shape[1] != 3 or len(metas) != pixels.shape[0]:
        raise ValueError(f"need (B, 3, H, W) pixels and B metas, got {tuple(pixels.shape)} and {len(metas)} metas")
    if tuple(pixels.shape[-2:]) != (imgsz, imgsz):
        raise ValueError(f"the engine takes {imgsz}x{imgsz} inputs, got {tuple(pixels.shape[-2:])}: letterbox with "
                         f"mlcore.inference.letterbox_preprocessor({imgsz})")
    return pixels if pixels.is_floating_point() else pixels.float()


def run_in_chunks(pixels: Array, run: Callable[[Any], Sequence[Any]], *, min_batch: int = 1,
                  max_batch: int | None = None) -> list[Any]:
    """Run a batch (numpy or torch) through a model that takes min_batch..max_batch images at a time; outputs
    concatenated (same kind as `run` returns).

    A fixed batch of N is min = max = N: the batch is split into chunks of N and the last one padded with zero
    images, whose outputs are dropped. A batch the model takes as it is goes in one call, uncopied.
    """
    size = pixels.shape[0]
    step = max_batch or max(size, min_batch)
    if min_batch <= size <= step:
        return list(run(pixels))
    parts: list[list[Any]] = []
    for start in range(0, size, step):
        chunk = pixels[start:start + step]
        count = chunk.shape[0]
        if count < min_batch:
            chunk = _concatenate([chunk, _zeros_like(chunk, min_batch - count)])
        parts.append([output[:count] for output in run(chunk)])
    return [_concatenate(list(outputs)) for outputs in zip(*parts)]


def _concatenate(parts: list[Any]) -> Any:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def _zeros_like(chunk: Any, count: int) -> Any:
    if isinstance(chunk, torch.Tensor):
        return chunk.new_zeros((count, *chunk.shape[1:]))
    return np.zeros((count, *chunk.shape[1:]), dtype=chunk.dtype)


def split_outputs(outputs: Sequence[Array], task: str, where: str) -> RawOutputs:
    """(decoded, protos) from a runtime's outputs (arrays or tensors): the 3-D one and, for segmentation, the 4-D
    prototypes."""
    decoded = [output for output in outputs if output.ndim == 3]
    protos = [output for output in outputs if output.ndim == 4]
    if len(decoded) != 1 or (task == "segment") != (len(protos) == 1) or len(protos) > 1:
        shapes = [tuple(output.shape) for output in outputs]
        raise ModelError(f"outputs {shapes} are not those of an ultralytics YOLOv8 {task} export", where=where,
                         fix="export the model with mlcore optimize or ultralytics (format=onnx / engine)")
    return decoded[0], (protos[0] if protos else None)


def check_channels(channels: int | None, num_classes: int, num_masks: int, where: str) -> None:
    """The decoded output's channel count (4 + nc + nm) must agree with the class names."""
    if channels is not None and channels != 4 + num_classes + num_masks:
        raise ModelError(f"{num_classes} class names do not fit the model's outputs ({channels} channels = 4 box + "
                         f"{channels - 4 - num_masks} classes" + (f" + {num_masks} mask coefficients)" if num_masks
                                                                 else ")"), where=where,
                         fix=f"pass the model's {channels - 4 - num_masks} class names as class_names=")
