"""Work for benchmark_memory's child process: importable without torch, so the child starts fast."""

from __future__ import annotations

import time

import numpy as np


def hold_memory(megabytes: int) -> None:
    """Touched pages count as resident; hold them a moment so in-process sampling sees them too."""
    block = np.ones(megabytes * 1024 * 1024 // 8)
    time.sleep(0.05)
    del block


def fail() -> None:
    raise ZeroDivisionError("on purpose")
