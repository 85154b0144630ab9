"""One real, temporary Prefect server (SQLite) for the whole integration session, isolated from the user's."""

from __future__ import annotations

import os
import tempfile

import pytest

_home = tempfile.mkdtemp(prefix="mlcore-prefect-home-")
os.environ["PREFECT_HOME"] = _home
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(_home, "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")



@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
