"""Shared helpers: configs are written into tmp_path; the environment is isolated from the developer's."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # weights_dir defaults read $MLCORE_MODELS_DIR; a developer's setting must not change test results.
    monkeypatch.delenv("MLCORE_MODELS_DIR", raising=False)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """write("sub/x.yaml", yaml_text) -> path, dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write
