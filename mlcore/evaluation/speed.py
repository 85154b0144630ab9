"""How fast a model answers: warm-up, then p50 / p95 latency and throughput at each batch size.

A call is timed end to end with time.perf_counter (preprocessing, inference, NMS, mask assembly: what a user of
`engine.predict(images)` waits for). Where torch has started CUDA, the device is synchronized before each clock
read, so queued kernels are counted in the call that launched them.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PredictFn = Callable[[list[Any]], Any]  # one batch (a list of images) -> anything


@dataclass
class BatchSpeed:
    """Latency of one call with `batch_size` images (ms) and the images per second that gives."""

    batch_size: int
    runs: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    fps: float

    @property
    def per_image_ms(self) -> float:
        return self.p50_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "runs": self.runs, "p50_ms": round(self.p50_ms, 3),
                "p95_ms": round(self.p95_ms, 3), "mean_ms": round(self.mean_ms, 3), "min_ms": round(self.min_ms, 3),
                "per_image_ms": round(self.per_image_ms, 3), "fps": round(self.fps, 3)}


@dataclass
class SpeedResult:
    """Speeds per batch size, and where they were measured."""

    name: str
    device: str
    warmup: int
    batches: list[BatchSpeed] = field(default_factory=list)

    def at(self, batch_size: int) -> BatchSpeed | None:
        return next((batch for batch in self.batches if batch.batch_size == batch_size), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "warmup": self.warmup,
                "batches": [batch.to_dict() for batch in self.batches]}


def benchmark_speed(target: Any, inputs: Sequence[Any], *, warmup: int = 3, runs: int = 20,
                    batch_sizes: Sequence[int] = (1, 8), name: str | None = None,
                    predict_options: dict[str, Any] | None = None) -> SpeedResult:
    """Time `target` on batches of `inputs` (images: paths, RGB arrays or PIL images, reused cyclically).

    target: an engine (its `predict(batch, **predict_options)` is timed) or any callable taking a list of inputs.
    Each batch size gets `warmup` untimed calls, then `runs` timed ones; fps = batch_size / mean latency.
    """
    if not inputs:
        raise ValueError("benchmark_speed needs at least one input")
    if runs < 1 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0 and batch sizes >= 1, got runs={runs}, warmup={warmup}, "
                         f"batch_sizes={list(batch_sizes)}")
    predict = _predict_fn(target, predict_options or {})
    result = SpeedResult(name or str(getattr(target, "name", getattr(target, "__name__", type(target).__name__))),
                         _device_of(target), warmup)
    for batch_size in batch_sizes:
        batch = [inputs[index % len(inputs)] for index in range(batch_size)]
        for _ in range(warmup):
            predict(batch)
        times = np.empty(runs)
        for run in range(runs):
            _synchronize()
            start = time.perf_counter()
            predict(batch)
            _synchronize()
            times[run] = (time.perf_counter() - start) * 1000.0
        result.batches.append(BatchSpeed(batch_size, runs, float(np.percentile(times, 50)),
                                         float(np.percentile(times, 95)), float(times.mean()), float(times.min()),
                                         batch_size * 1000.0 / float(times.mean())))
    result.device = _device_of(target)  # CUDA may have started during the calls
    return result


def environment() -> dict[str, Any]:
    """Where numbers were measured: machine, CPU, GPU (when torch sees one) and library versions."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": _cpu_name(), "cpu_count": os.cpu_count(),
                            "python": platform.python_version()}
    for module in ("torch", "onnxruntime", "ultralytics", "tensorrt"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "unknown")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    onnxruntime = sys.modules.get("onnxruntime")
    if onnxruntime is not None:
        info["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    return info


def _predict_fn(target: Any, options: dict[str, Any]) -> PredictFn:
    predict = getattr(target, "predict", None)
    if callable(predict):
        return lambda batch: predict(batch, **options)
    if callable(target):
        return lambda batch: target(batch, **options)
    raise TypeError(f"benchmark_speed needs an engine with predict() or a callable, got {type(target).__name__}")


def _synchronize() -> None:
    torch = sys.modules.get("torch")  # never import torch (and start CUDA) just to time an ONNX model
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _device_of(target: Any) -> str:
    device = getattr(target, "device", None)
    if device is not None:
        return str(device)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"cuda ({torch.cuda.get_device_name(torch.cuda.current_device())})"
    return "cpu"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
