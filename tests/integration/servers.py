"""A Prefect server on loopback for a test: started, waited for, stopped. Shared by the deployment and the browser
tests (and scripts/ui_screenshots.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, port: int | None = None, project: Path | None = None) -> Iterator[dict[str, str]]:
    """`prefect server start` on loopback with its own PREFECT_HOME; yields the environment for the CLI, workers and
    the server itself. PREFECT_API_URL is in the server's environment too: on a port other than 4200 its UI would
    otherwise call 127.0.0.1:4200/api."""
    port = port or free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if project is not None:
        env["MLCORE_PROJECT_DIR"] = str(project)
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(port, server)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
