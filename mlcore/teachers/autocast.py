"""Which dtype the teachers' heavy forwards (Grounding DINO, SAM's image encoder) autocast to when they label.

Labelling is inference only, so a lower precision costs no training stability: on a GPU bf16 (fp16 on GPUs without
native bf16) is the usual choice, and on a CPU with native bf16 (AVX512-BF16 or AMX) it made the full-size teachers
1.64x faster than fp32 with labels within 0.1 mAP point (benchmarks/results/teacher_labelling_cpu.json). Small
models gain nothing on a CPU (their time is overhead, and the casts add to it: the tiny test teachers took 2.06 s in
bf16 against 1.31 s in fp32 on two images), so `auto` keeps them in fp32 there. Everything after the forwards
(scores, thresholds, NMS, SAM's mask decoder) stays fp32.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

from mlcore.errors import ConfigError

LabellingPrecision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_MIN_PARAMETERS = 20_000_000  # below this a model's CPU time is overhead, which bf16 does not shrink


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def labelling_dtype(precision: str, device: torch.device | str, parameters: int) -> torch.dtype | None:
    """`precision` for a model of `parameters` on `device` -> the autocast dtype, None for fp32.

    auto: bf16 on CUDA with native bf16, fp16 on older GPUs; on a CPU bf16 where it is native and the model is large
    enough to gain, else fp32. An explicit fp16 on a CPU runs as fp32 (CPU fp16 is slower than fp32).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown teacher precision {precision!r}", where="teacher_precision",
                          fix=f"use one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision != "auto":
        return None if device.type == "cpu" and precision == "fp16" else _DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    large = parameters >= CPU_BF16_MIN_PARAMETERS
    return torch.bfloat16 if device.type == "cpu" and large and cpu_has_native_bf16() else None


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[object]:
    """`torch.autocast` to `dtype` on `device`, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
