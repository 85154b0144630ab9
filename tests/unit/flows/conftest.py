"""A temporary Prefect server for the few tests that need real task runs (retries, the result cache), and a loopback
S3 endpoint for the store task."""

from __future__ import annotations

import os
import tempfile

import pytest

# The loopback S3 endpoint (moto's server) and its fixtures, shared with the storage tests rather than copied.
from tests.unit.storage.conftest import aws_env, bucket, moto_endpoint  # noqa: F401

# Before Prefect reads its settings, when these tests run alone: keep its home and storage out of the user's.
_home = tempfile.mkdtemp(prefix="mlcore-flows-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _home)
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", os.path.join(_home, "storage"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
