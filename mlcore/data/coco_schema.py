"""Typed views of the COCO records we validate, decoded with msgspec.

Only the fields validation reads are typed. Everything else in a record (custom keys, `info`, `licenses`) is kept
as the original bytes (`msgspec.Raw`) and written back unchanged, so a cleaned copy loses nothing.
"""

from __future__ import annotations

import msgspec

NO_VALUE = msgspec.Raw()  # a field that was absent from the record


class CocoImage(msgspec.Struct):
    id: int
    file_name: str
    width: float | None = None  # some exporters write 640.0; validation insists on a whole number
    height: float | None = None


class CocoCategory(msgspec.Struct):
    id: int
    name: str
    supercategory: str | None = None


class CocoAnnotation(msgspec.Struct):
    id: int
    image_id: int
    category_id: int
    bbox: list[float | None] | None = None
    area: float | None = None
    iscrowd: int | bool = 0
    segmentation: msgspec.Raw = NO_VALUE


record_field_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
json_encoder = msgspec.json.Encoder()


def replace_fields(raw: msgspec.Raw | bytes, **fields: object) -> bytes:
    """Re-encode one record with some fields replaced, every other field byte-for-byte as it was."""
    record = record_field_decoder.decode(raw)
    record.update(fields)
    return json_encoder.encode(record)


def json_path(prefix: str, msgspec_path: str) -> str:
    """Turn msgspec's '$.bbox[2]' into 'annotations[7].bbox[2]'."""
    suffix = msgspec_path[1:] if msgspec_path.startswith("$") else msgspec_path
    return prefix + suffix
