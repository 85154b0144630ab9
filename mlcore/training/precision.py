"""Which autocast dtype a run uses: bf16 or fp16 (with a loss scaler) on CUDA, plain fp32 everywhere else."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

from mlcore.logs import get_logger

log = get_logger(__name__)

_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Precision:
    """The resolved setting: `dtype` None means fp32 with no autocast at all."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return _NAMES[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and does not need it.
        return self.dtype is torch.float16

    def autocast(self) -> ContextManager[object]:
        """`torch.autocast` for this dtype, or a no-op for fp32 (CPU never autocasts here)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A dynamic loss scaler for fp16, None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.needs_scaler else None


def resolve_precision(setting: str, device: torch.device | str) -> Precision:
    """`mixed_precision` (auto|bf16|fp16|off) on `device` -> the dtype actually used.

    auto: bf16 where the GPU runs it natively, else fp16; CPU (and any non-CUDA device): fp32. An explicit bf16/fp16
    where it cannot run is downgraded with one log line rather than refused, so one config serves GPU and CPU runs.
    """
    device = torch.device(device)
    if setting == "off":
        return Precision(device.type, None)
    if device.type != "cuda":
        if setting != "auto":
            log.info("mixed_precision %s needs CUDA; training in fp32 on %s", setting, device.type)
        return Precision(device.type, None)
    if setting == "fp16":
        return Precision("cuda", torch.float16)
    if setting == "bf16":
        if torch.cuda.is_bf16_supported(including_emulation=True):
            return Precision("cuda", torch.bfloat16)
        log.info("mixed_precision bf16 is not supported by this GPU; using fp16 with loss scaling")
        return Precision("cuda", torch.float16)
    if setting != "auto":
        raise ValueError(f"unknown mixed_precision {setting!r}; expected auto, bf16, fp16 or off")
    # auto: emulated bf16 (pre-Ampere GPUs) is slow, so only native support counts.
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return Precision("cuda", torch.bfloat16 if native_bf16 else torch.float16)
