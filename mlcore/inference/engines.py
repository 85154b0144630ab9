"""The engines behind one interface, and `load_engine(path)`, which picks one by the file's suffix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlcore.errors import ModelError
from mlcore.inference.base import EngineBase
from mlcore.inference.onnx_engine import ONNXEngine
from mlcore.inference.tensorrt_engine import TensorRTEngine
from mlcore.inference.torch_engine import PyTorchEngine
from mlcore.inference.types import InferenceEngine

ENGINE_OF_SUFFIX: dict[str, type[EngineBase]] = {
    ".pt": PyTorchEngine,
    ".onnx": ONNXEngine,
    ".engine": TensorRTEngine,
    ".plan": TensorRTEngine,
}


def load_engine(path: str | os.PathLike[str], *, device: str = "auto", imgsz: int | None = None,
                class_names: Sequence[str] | None = None, threads: int | None = None) -> InferenceEngine:
    """.pt -> PyTorchEngine, .onnx -> ONNXEngine, .engine / .plan -> TensorRTEngine.

    device: "auto" (CUDA when the runtime has it, else CPU), "cpu", "cuda", "cuda:N". imgsz / class_names: for
    models whose file does not say (or to override what it says). threads: ONNX Runtime's intra-op threads (its
    default: one per core), for a device that runs other work beside the model; other engines ignore it.
    """
    path = Path(path)
    engine = ENGINE_OF_SUFFIX.get(path.suffix.lower())
    if engine is None:
        raise ModelError(f"no inference engine for {path.suffix or 'files without a suffix'!r}", where=str(path),
                         fix=f"give a model file ending in {', '.join(ENGINE_OF_SUFFIX)}")
    if not path.is_file():
        raise ModelError("model file not found", where=str(path), fix="check the path")
    if engine is ONNXEngine:
        return ONNXEngine(path, device=device, imgsz=imgsz, class_names=class_names, threads=threads)
    return engine(path, device=device, imgsz=imgsz, class_names=class_names)


__all__ = ["ENGINE_OF_SUFFIX", "EngineBase", "InferenceEngine", "ONNXEngine", "PyTorchEngine", "TensorRTEngine",
           "load_engine"]
