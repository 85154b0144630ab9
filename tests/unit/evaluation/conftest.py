"""ultralytics' settings in a temp dir for the student evaluations."""

from __future__ import annotations

import os

import pytest

from mlcore.students import configure_ultralytics


@pytest.fixture(scope="session", autouse=True)
def ultralytics_home(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    return configure_ultralytics()
