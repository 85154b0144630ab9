"""Streaming COCO output: records are written as they are (raw bytes), atomically, without building one big object."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import msgspec

from mlcore.io import atomic_open


def write_coco(path: Path, *, header: dict[str, msgspec.Raw], images: Iterable[bytes | msgspec.Raw],
               annotations: Iterable[bytes | msgspec.Raw], categories: Iterable[bytes | msgspec.Raw]) -> str:
    """Write a COCO file: any extra top-level keys (info, licenses...) first, then images, annotations, categories.

    Returns the sha256 of what was written, hashed on the way out rather than read back.
    """
    with atomic_open(path, "wb") as raw_handle:
        handle = _HashingWriter(raw_handle)
        handle.write(b"{")
        for key, value in header.items():
            handle.write(msgspec.json.encode(key) + b":" + bytes(value) + b",")
        for position, (key, records) in enumerate(
            (("images", images), ("annotations", annotations), ("categories", categories))
        ):
            handle.write(b'%s"%s":[' % (b"," if position else b"", key.encode()))
            first = True
            for record in records:
                if not first:
                    handle.write(b",\n")
                handle.write(record)
                first = False
            handle.write(b"]")
        handle.write(b"}\n")
    return handle.digest.hexdigest()


class _HashingWriter:
    def __init__(self, handle) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes | msgspec.Raw) -> None:
        self.digest.update(data)
        self._handle.write(data)
