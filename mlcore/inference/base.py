"""What the engines share: predict = letterbox + the runtime's forward + shared post-processing; batch splitting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mlcore.errors import ModelError
from mlcore.inference.letterbox import letterbox_images
from mlcore.inference.postprocess import postprocess_yolo
from mlcore.inference.types import Detections
from mlcore.preprocess import PreprocessMeta
from mlcore.preprocess.inputs import ImageInput

RawOutputs = tuple[torch.Tensor, torch.Tensor | None]  # decoded (B, C, N), protos (B, nm, h, w) or None


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
        batch = letterbox_images(images, self.imgsz)
        if batch is None:
            return []
        return self.predict_batch(batch.pixel_values, batch.meta, conf=conf, iou=iou, max_det=max_det)

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


def check_batch(pixel_values: np.ndarray | torch.Tensor, metas: Sequence[PreprocessMeta], imgsz: int) -> torch.Tensor:
    """(B, 3, imgsz, imgsz) float tensor with B metas, or a ValueError saying what came instead."""
    pixels = torch.from_numpy(np.asarray(pixel_values)) if not isinstance(pixel_values, torch.Tensor) else pixel_values
    if pixels.dim() != 4 or pixels.shape[1] != 3 or len(metas) != pixels.shape[0]:
        raise ValueError(f"need (B, 3, H, W) pixels and B metas, got {tuple(pixels.shape)} and {len(metas)} metas")
    if tuple(pixels.shape[-2:]) != (imgsz, imgsz):
        raise ValueError(f"the engine takes {imgsz}x{imgsz} inputs, got {tuple(pixels.shape[-2:])}: letterbox with "
                         f"mlcore.inference.letterbox_preprocessor({imgsz})")
    return pixels if pixels.is_floating_point() else pixels.float()


def run_in_chunks(pixels: torch.Tensor, run: Callable[[torch.Tensor], Sequence[torch.Tensor]], *,
                  min_batch: int = 1, max_batch: int | None = None) -> list[torch.Tensor]:
    """Run a batch through a model that takes min_batch..max_batch images at a time; outputs concatenated.

    A fixed batch of N is min = max = N: the batch is split into chunks of N and the last one padded with zero
    images, whose outputs are dropped.
    """
    size = pixels.shape[0]
    step = max_batch or max(size, min_batch)
    parts: list[list[torch.Tensor]] = []
    for start in range(0, size, step):
        chunk = pixels[start:start + step]
        count = chunk.shape[0]
        if count < min_batch:
            chunk = torch.cat([chunk, chunk.new_zeros((min_batch - count, *chunk.shape[1:]))])
        parts.append([output[:count] for output in run(chunk)])
    return [torch.cat(outputs) for outputs in zip(*parts)]


def split_outputs(outputs: Sequence[torch.Tensor], task: str, where: str) -> RawOutputs:
    """(decoded, protos) from a runtime's outputs: the 3-D one and, for segmentation, the 4-D prototypes."""
    decoded = [output for output in outputs if output.dim() == 3]
    protos = [output for output in outputs if output.dim() == 4]
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
