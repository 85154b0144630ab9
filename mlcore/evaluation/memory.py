"""How much memory a piece of work needs at its peak: CPU resident set size, and GPU memory where torch uses CUDA.

Two ways to measure, chosen by `isolate`:
- isolate=True (default): `fn` runs in a fresh child process (multiprocessing "spawn"), and the peak is the child's
  own high-water mark (getrusage ru_maxrss) after it: exact, and not inflated by what this process already holds
  (other models loaded earlier). It includes the interpreter and the imports `fn` needs, which a deployed process
  has too; `baseline_rss_mb` is the child's RSS just before `fn` ran. `fn` and its arguments must pickle (a
  module-level function).
- isolate=False: `fn` runs here while a thread samples this process's RSS (psutil) every `interval_s`; peak is the
  largest sample, baseline the RSS before. Works with any callable, but misses spikes shorter than the interval and
  counts memory this process held already.
GPU: torch's allocator high-water mark (max_memory_allocated) when CUDA was in use; memory other libraries take
outside torch's allocator (ONNX Runtime's CUDA provider, TensorRT) is not seen by it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import resource
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MB = 1024.0 * 1024.0


@dataclass
class MemoryResult:
    """Peak memory of one piece of work (MB); peak_gpu_mb None where torch did not use CUDA."""

    peak_rss_mb: float
    baseline_rss_mb: float
    peak_gpu_mb: float | None
    method: str

    @property
    def increase_rss_mb(self) -> float:
        return max(self.peak_rss_mb - self.baseline_rss_mb, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_rss_mb": round(self.peak_rss_mb, 1), "baseline_rss_mb": round(self.baseline_rss_mb, 1),
                "increase_rss_mb": round(self.increase_rss_mb, 1),
                "peak_gpu_mb": None if self.peak_gpu_mb is None else round(self.peak_gpu_mb, 1),
                "method": self.method}


def benchmark_memory(fn: Callable[..., Any], *args: Any, isolate: bool = True, interval_s: float = 0.002,
                     **kwargs: Any) -> MemoryResult:
    """Peak CPU RSS (and GPU memory) of `fn(*args, **kwargs)`; see the module docstring for the two methods."""
    if not isolate:
        return _in_process(fn, args, kwargs, interval_s)
    try:
        pickle.dumps((fn, args, kwargs))
    except Exception as error:  # pickling raises several types (PicklingError, AttributeError, TypeError)
        raise ValueError(f"benchmark_memory(isolate=True) runs fn in a child process, so fn and its arguments must "
                         f"pickle: {error}. Use a module-level function, or isolate=False") from None
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, fn, args, kwargs), daemon=True)
    child.start()
    sender.close()
    try:
        outcome = receiver.recv()
    except EOFError:
        outcome = None
    child.join()
    if outcome is None:
        outcome = {"error": f"the child process died (exit code {child.exitcode}); it may have been killed for "
                            f"memory"}
    if "error" in outcome:
        raise RuntimeError(f"benchmark_memory: fn failed in the child process:\n{outcome['error']}")
    return MemoryResult(outcome["peak_rss_mb"], outcome["baseline_rss_mb"], outcome["peak_gpu_mb"],
                        "child process (spawn), getrusage ru_maxrss; GPU: torch.cuda.max_memory_allocated")


def _child(sender: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        baseline = _current_rss_mb()
        fn(*args, **kwargs)
        sender.send({"peak_rss_mb": max(_max_rss_mb(), baseline), "baseline_rss_mb": baseline,
                     "peak_gpu_mb": _peak_gpu_mb()})
    except BaseException:
        sender.send({"error": traceback.format_exc()})
    finally:
        sender.close()


def _in_process(fn: Callable[..., Any], args: tuple, kwargs: dict, interval_s: float) -> MemoryResult:
    import psutil

    process = psutil.Process()
    baseline = process.memory_info().rss / _MB
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], process.memory_info().rss / _MB)

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn(*args, **kwargs)
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss / _MB)
    return MemoryResult(peak[0], baseline, _peak_gpu_mb(),
                        f"in-process RSS sampling every {interval_s * 1000:g} ms (psutil); "
                        f"GPU: torch.cuda.max_memory_allocated")


def _peak_gpu_mb() -> float | None:
    torch = sys.modules.get("torch")  # only if fn used torch: importing it here would start nothing useful
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / _MB


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, kilobytes on Linux


def _current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / _MB
    except ImportError:
        return _max_rss_mb()
