"""Repaired records parked on disk as they are made, so a cleaned copy of a large file costs no memory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import msgspec


class Spooled(NamedTuple):
    offset: int
    length: int


class RecordSpool:
    """An anonymous temp file (gone when closed, or when the process dies) holding re-encoded records."""

    def __init__(self, folder: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix=".mlcore-spool-", dir=folder)
        self._size = 0
        self._unflushed = False

    def put(self, record: bytes) -> Spooled:
        self._file.write(record)
        self._unflushed = True
        spooled = Spooled(self._size, len(record))
        self._size += len(record)
        return spooled

    def get(self, item: Spooled | bytes | msgspec.Raw) -> bytes | msgspec.Raw:
        """A record's bytes, wherever they are kept."""
        if not isinstance(item, Spooled):
            return item
        if self._unflushed:
            self._file.flush()
            self._unflushed = False
        return os.pread(self._file.fileno(), item.length, item.offset)

    def close(self) -> None:
        self._file.close()
