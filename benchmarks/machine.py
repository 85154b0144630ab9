"""What every benchmark records beside its figures: the machine, its load, the package versions and the code measured.

Results are compared across runs and machines only through these fields, so they are gathered the same way everywhere.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent


def loads() -> list[float]:
    """The 1, 5 and 15 minute load averages: on a shared machine, the context every timing needs."""
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine_info(packages: Iterable[str], **extra: Any) -> dict[str, Any]:
    """CPU, memory, load at the start, platform and the versions of PACKAGES (mlcore's included), plus EXTRA."""
    return {"cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(),
            "memory_bytes": memory_bytes(), "load_average_at_start": loads(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": package_versions(["mlcore", *packages]), **extra}


def code_version() -> dict[str, Any]:
    """The commit measured, the project's uncommitted changes then, and a hash of mlcore's sources."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=30,
                                  check=True).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return None

    changes = git("status", "--porcelain", "--", "mlcore", "flows", "tasks")
    sources = hashlib.sha256()
    for path in sorted((PROJECT / "mlcore").rglob("*.py")):
        sources.update(path.relative_to(PROJECT).as_posix().encode() + b"\0" + path.read_bytes())
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": changes.splitlines() if changes is not None else None,
            "mlcore_sources_sha256": sources.hexdigest()}


def status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A memory figure (VmHWM, VmRSS, ...) of a process from /proc/<pid>/status, in bytes; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
