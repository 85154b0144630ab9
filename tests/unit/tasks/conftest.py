"""The loopback S3 endpoint (moto's server) and its fixtures, shared with the storage tests rather than copied."""

from __future__ import annotations

from tests.unit.storage.conftest import aws_env, bucket, flaky_proxy, moto_endpoint  # noqa: F401
