"""TensorRTEngine: a serialized TensorRT engine (.engine / .plan) run on an NVIDIA GPU with torch CUDA buffers.

`tensorrt` is imported only here, when an engine is opened: it is not installable everywhere (it needs an NVIDIA GPU
and the wheel matching the CUDA version). Needs TensorRT 8.5+ (the named-tensor API: set_input_shape,
set_tensor_address, execute_async_v3). Engines ultralytics exports carry a JSON metadata header ahead of the engine
bytes; plain engines take their names / imgsz from a sidecar or from class_names= / imgsz=. Dynamic-batch engines run
a batch in chunks of the optimization profile's largest batch (the last chunk padded up to its smallest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mlcore.errors import ModelError
from mlcore.inference.base import EngineBase, RawOutputs, check_channels, run_in_chunks, split_outputs
from mlcore.inference.metadata import check_end_to_end, resolve_metadata

INSTALL_FIX = ("install TensorRT's Python package on a machine with an NVIDIA GPU: the wheel matching its CUDA "
               "version (`pip install tensorrt-cu12` for CUDA 12, `tensorrt-cu13` for CUDA 13; NVIDIA's index must be "
               "reachable), or on a Jetson the JetPack's python3-libnvinfer; or run the .onnx model instead")


def import_tensorrt(where: str = "tensorrt") -> Any:
    """`import tensorrt`, or a ModelError saying what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ModelError(f"TensorRT is not installed ({exc}): TensorRT engines cannot be built or run here",
                         where=where, fix=INSTALL_FIX) from None
    return tensorrt


def read_engine_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the engine bytes, metadata): ultralytics writes a 4-byte little-endian length and JSON first."""
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(4), byteorder="little")
        if 0 < length <= path.stat().st_size - 4:
            try:
                metadata = json.loads(handle.read(length))
            except ValueError:  # engine bytes, not JSON: no header
                return 0, {}
            if isinstance(metadata, dict):
                return 4 + length, metadata
    return 0, {}


class TensorRTEngine(EngineBase):
    """An ultralytics-layout TensorRT engine (one image input "images"; decoded boxes [+ mask prototypes] out).

    device: "auto" / "cuda" / "cuda:N" (a GPU is required). imgsz / class_names: override or stand in for metadata.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", imgsz: int | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        where = str(self.path)
        trt = import_tensorrt(where)
        if not torch.cuda.is_available():
            raise ModelError("TensorRT engines run on an NVIDIA GPU and torch sees none", where=where,
                             fix="run on a machine with a CUDA GPU (and a CUDA build of torch), or use the .onnx model")
        if device in ("auto", "cuda"):
            device = "cuda:0"
        if not device.startswith("cuda"):
            raise ModelError(f"TensorRT engines run on CUDA, not {device!r}", where="device",
                             fix='use device="cuda" (or "cuda:N")')
        if not self.path.is_file():
            raise ModelError("TensorRT engine not found", where=where, fix="give the path of a .engine / .plan file")
        self._device = torch.device(device)
        offset, header = read_engine_header(self.path)
        check_end_to_end(header, where)
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self._device):
            runtime = trt.Runtime(self._logger)
            if header.get("dla") is not None:
                runtime.DLA_core = int(header["dla"])
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                engine = runtime.deserialize_cuda_engine(handle.read())
            if engine is None:
                raise ModelError("TensorRT could not deserialize the engine (built by another TensorRT version, for "
                                 "another GPU, or not an engine)", where=where,
                                 fix=f"rebuild it on this machine with TensorRT {trt.__version__} from the .onnx model")
            if not hasattr(engine, "num_io_tensors"):
                raise ModelError(f"TensorRT {trt.__version__} is too old (the named-tensor API needs 8.5 or newer)",
                                 where=where, fix="install TensorRT 8.5+ (10.x recommended)")
            self._engine = engine
            self._context = engine.create_execution_context()
        self._runtime = runtime
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        self._outputs = sorted(name for name in names if name not in inputs)  # output0, output1 as exported
        if len(inputs) != 1:
            raise ModelError(f"the engine has inputs {inputs}; engines run models with one image input", where=where,
                             fix="build the engine from a single-input export (mlcore optimize)")
        self._input = inputs[0]
        shape = list(engine.get_tensor_shape(self._input))
        if len(shape) != 4:
            raise ModelError(f"the engine's input is {shape}, not (B, 3, H, W)", where=where,
                             fix="build the engine from an mlcore / ultralytics ONNX export")
        self._dtypes = {name: _torch_dtype(trt, engine.get_tensor_dtype(name)) for name in names}
        self.dynamic = -1 in shape
        if self.dynamic:
            low, _, high = (list(dims) for dims in engine.get_tensor_profile_shape(self._input, 0))
            self.min_batch, self.max_batch = int(low[0]), int(high[0])
            height = low[2] if low[2] == high[2] else None
            width = low[3] if low[3] == high[3] else None
        else:
            self.min_batch = self.max_batch = int(shape[0])
            height, width = shape[2], shape[3]
        metadata = resolve_metadata(header, self.path, class_names=class_names, imgsz=imgsz, input_hw=(height, width),
                                    fallback_task="segment" if len(self._outputs) > 1 else "detect")
        if self.dynamic and (height is None or width is None):
            lowest, highest = max(low[2], low[3]), min(high[2], high[3])
            if not lowest <= metadata.imgsz <= highest:
                raise ModelError(f"imgsz {metadata.imgsz} is outside the engine's profile ({lowest}-{highest})",
                                 where=where, fix=f"pass imgsz between {lowest} and {highest}")
        self.class_names, self.imgsz, self.task = metadata.class_names, metadata.imgsz, metadata.task
        decoded_shape = list(engine.get_tensor_shape(self._outputs[0]))
        protos_shape = list(engine.get_tensor_shape(self._outputs[1])) if len(self._outputs) > 1 else []
        check_channels(decoded_shape[1] if len(decoded_shape) == 3 and decoded_shape[1] > 0 else None,
                       self.num_classes, (protos_shape[1] if protos_shape[1:2] and protos_shape[1] > 0 else 32)
                       if protos_shape else 0, where)
        self.device = str(self._device)
        self.name = f"tensorrt:{self.path.name}"

    def _forward(self, pixels: torch.Tensor) -> RawOutputs:
        outputs = run_in_chunks(pixels, self._run, min_batch=self.min_batch, max_batch=self.max_batch)
        return split_outputs(outputs, self.task, str(self.path))

    def _run(self, chunk: torch.Tensor) -> list[torch.Tensor]:
        context = self._context
        images = chunk.to(self._device, dtype=self._dtypes[self._input]).contiguous()
        with torch.cuda.device(self._device):
            if self.dynamic and not context.set_input_shape(self._input, tuple(images.shape)):
                raise ModelError(f"input {tuple(images.shape)} is outside the engine's optimization profile",
                                 where=str(self.path), fix="rebuild the engine with a profile covering this size")
            context.set_tensor_address(self._input, images.data_ptr())
            outputs = []
            for name in self._outputs:
                output = torch.empty(tuple(context.get_tensor_shape(name)), dtype=self._dtypes[name],
                                     device=self._device)
                context.set_tensor_address(name, output.data_ptr())
                outputs.append(output)
            stream = torch.cuda.current_stream(self._device)
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT inference failed for {self.path}")
            stream.synchronize()
        return [output.float() for output in outputs]


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    return table[dtype]
