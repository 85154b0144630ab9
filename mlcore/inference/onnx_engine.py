"""ONNXEngine: an ONNX export run by ONNX Runtime (CUDA provider when available, else CPU).

onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: a machine has one or the other, never both;
the GPU build also runs on CPU. Models with a dynamic batch axis take a whole batch at once; a fixed batch (ultralytics'
default export is fixed at 1) is fed in chunks of that size. Inputs and outputs stay numpy arrays from the letterbox
to the post-processing: no torch tensor (nor torch's thread pool) on the way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcore.errors import ModelError
from mlcore.inference.base import EngineBase, RawOutputs, check_channels, run_in_chunks, split_outputs
from mlcore.inference.metadata import check_end_to_end, parse_exporter_metadata, resolve_metadata
from mlcore.logs import get_logger

log = get_logger(__name__)

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


class ONNXEngine(EngineBase):
    """An ultralytics-layout ONNX model (one image input; decoded boxes [+ mask prototypes] out).

    device: "auto" (CUDA when onnxruntime has the CUDA provider, else CPU), "cpu", "cuda" or "cuda:N".
    imgsz / class_names: override (or stand in for missing) metadata. threads: ONNX Runtime intra-op threads.
    spinning: False stops idle intra-op threads from busy-waiting after each run (ONNX Runtime's default is to spin):
    on a shared or small CPU, or with several sessions in one process, that was faster here, not slower.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", imgsz: int | None = None,
                 class_names: Sequence[str] | None = None, threads: int | None = None,
                 spinning: bool = True) -> None:
        import onnxruntime

        self.path = Path(path)
        where = str(self.path)
        if not self.path.is_file():
            raise ModelError("ONNX model not found", where=where, fix="give the path of a .onnx file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                        providers=_providers(device, onnxruntime))
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
            raise ModelError(f"ONNX Runtime cannot load the model: {str(exc).strip().splitlines()[0]}", where=where,
                             fix="give an ONNX file exported by mlcore optimize or ultralytics") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"the model has inputs {[(i.name, i.shape) for i in inputs]}; engines run models with "
                             "one (B, 3, H, W) image input", where=where,
                             fix="export the student alone (no prompt inputs), e.g. with mlcore optimize")
        self._input = inputs[0]
        self._input_type = _NUMPY_TYPES.get(self._input.type)
        if self._input_type is None:
            raise ModelError(f"unsupported input type {self._input.type}", where=where,
                             fix="export with float32 (or float16) inputs")
        batch, _, height, width = (_static(dim) for dim in self._input.shape)
        self.fixed_batch = batch
        embedded = parse_exporter_metadata(self.session.get_modelmeta().custom_metadata_map)
        check_end_to_end(embedded, where)
        outputs = self.session.get_outputs()
        inferred_task = "segment" if any(len(output.shape) == 4 for output in outputs) else "detect"
        metadata = resolve_metadata(embedded, self.path, class_names=class_names, imgsz=imgsz,
                                    input_hw=(height, width), fallback_task=inferred_task)
        self.class_names, self.imgsz, self.task = metadata.class_names, metadata.imgsz, metadata.task
        protos = [output for output in outputs if len(output.shape) == 4]
        decoded = [output for output in outputs if len(output.shape) == 3]
        if len(decoded) != 1 or (self.task == "segment") != (len(protos) == 1):
            raise ModelError(f"outputs {[(o.name, o.shape) for o in outputs]} are not those of an ultralytics YOLOv8 "
                             f"{self.task} export", where=where,
                             fix="export with mlcore optimize or ultralytics (format=onnx, nms=False)")
        if decoded:
            check_channels(_static(decoded[0].shape[1]), self.num_classes,
                           (_static(protos[0].shape[1]) or 32) if protos else 0, where)
        providers = self.session.get_providers()
        self.device = "cuda" if providers and providers[0] == CUDA_PROVIDER else "cpu"
        if device.startswith("cuda") and self.device == "cpu":
            log.warning("ONNX Runtime could not use CUDA for %s; running on CPU", self.path.name)
        self.name = f"onnx:{self.path.name}"

    @property
    def dynamic_batch(self) -> bool:
        return self.fixed_batch is None

    def _forward(self, pixels: np.ndarray | torch.Tensor) -> RawOutputs:
        if isinstance(pixels, torch.Tensor):
            pixels = pixels.detach().cpu().numpy()
        array = np.ascontiguousarray(pixels, dtype=self._input_type)  # no copy when already float32 and contiguous
        batch = self.fixed_batch
        outputs = run_in_chunks(array, self._run, min_batch=batch or 1, max_batch=batch)
        return split_outputs(outputs, self.task, str(self.path))

    def _run(self, chunk: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in self.session.run(None, {self._input.name: chunk})]


def _providers(device: str, onnxruntime: Any) -> list[Any]:
    available = onnxruntime.get_available_providers()
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    if not device.startswith("cuda"):
        raise ModelError(f"unknown device {device!r}", where="device", fix='use "auto", "cpu", "cuda" or "cuda:N"')
    if CUDA_PROVIDER not in available:
        raise ModelError(f"device {device!r} asked for, but this onnxruntime has no CUDA provider", where="device",
                         fix="install onnxruntime-gpu in place of onnxruntime (never both: they share one module), "
                             'or use device="cpu"')
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]


def _static(dim: Any) -> int | None:
    """An ONNX dimension: an int when fixed, a name or None when dynamic."""
    return int(dim) if isinstance(dim, int) and dim > 0 else None
