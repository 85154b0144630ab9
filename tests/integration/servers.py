"""Waiting for a Prefect server a test started: shared by the deployment and the browser tests."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_until_healthy(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    """Return once http://127.0.0.1:PORT/api/health answers; RuntimeError if SERVER exits or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the Prefect server did not come up within {timeout:.0f} s") from None
            time.sleep(1)
