"""Fixtures every unit test room may use."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def mlcore_logs() -> Iterator[list[logging.LogRecord]]:
    """Records logged under mlcore (captured directly: setup_logging may stop mlcore propagating)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("mlcore")
    handler, level = Collect(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _no_deterministic_leak() -> Iterator[None]:
    """A test that turns on deterministic algorithms (seed_everything) must not leave them on for the next."""
    yield
    torch.use_deterministic_algorithms(False)
