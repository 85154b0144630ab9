"""Reading a COCO annotation file without holding it twice in memory.

The file is memory-mapped and decoded with msgspec into raw, zero-copy slices, one per record; each record is
decoded on its own later. Peak memory stays near the file's size, where `json.load` needs several times it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mlcore.data import lookalikes
from mlcore.data.coco_schema import json_encoder
from mlcore.errors import DatasetError


@dataclass
class RawCoco:
    path: Path
    sha256: str
    images: list[msgspec.Raw]
    annotations: list[msgspec.Raw]
    categories: list[msgspec.Raw]
    extra: dict[str, msgspec.Raw]  # other top-level keys (info, licenses, ...), written back verbatim
    non_standard_numbers: bool  # NaN / Infinity literals were read as null
    has_annotations_key: bool = True  # False for an image-info file (like COCO's image_info_test): no labels at all


RECORD_LISTS = ("images", "annotations", "categories")
# Top-level entry mlcore adds to the files it writes: {"images_root": ...}, so later commands need no --images.
MLCORE_KEY = "mlcore"
_top_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def read_coco(path: str | Path) -> RawCoco:
    path = Path(path)
    if not path.is_file():
        raise DatasetError("annotation file not found", where=str(path), fix="pass the path of a COCO JSON file")
    if path.stat().st_size == 0:
        raise DatasetError("annotation file is empty", where=str(path), fix="export the annotations again")
    with open(path, "rb") as handle:
        buffer: bytes | mmap.mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    where = str(path)
    if lfs_pointer := lookalikes.git_lfs_pointer(buffer[:1024], where):
        raise lfs_pointer
    digest = hashlib.sha256(buffer).hexdigest()
    top, non_standard = _decode_top(buffer, path)
    if isinstance(top, list):
        raise lookalikes.recognise(top, where) or _not_an_object(path)
    lists = {}
    for key in RECORD_LISTS:
        try:
            lists[key] = _list_decoder.decode(top[key]) if key in top else []
        except msgspec.ValidationError:
            raise DatasetError(f"'{key}' is not a list", where=f"{path}: {key}",
                               fix=f"'{key}' must be a JSON list of objects") from None
    if lookalike := lookalikes.recognise(top, where, lists["annotations"]):
        raise lookalike
    missing = [key for key in ("images", "categories") if key not in top]
    if missing:
        raise DatasetError(f"missing top-level key(s): {', '.join(missing)}", where=where,
                           fix="a COCO file needs 'images' and 'categories' lists ('annotations' may be absent)")
    extra = {key: value for key, value in top.items() if key not in RECORD_LISTS}
    return RawCoco(path=path, sha256=digest, extra=extra, non_standard_numbers=non_standard,
                   has_annotations_key="annotations" in top, **lists)


def _decode_top(buffer: bytes | mmap.mmap, path: Path) -> tuple[dict[str, msgspec.Raw] | list[msgspec.Raw], bool]:
    """The top level as raw slices (an object or a list), and whether NaN / Infinity had to be read as null."""
    try:
        return _top_decoder.decode(buffer), False
    except msgspec.ValidationError:  # a bare number or string
        raise _not_an_object(path) from None
    except msgspec.DecodeError:
        pass
    try:
        return _top_decoder.decode(_reencode_with_python_json(path)), True
    except msgspec.ValidationError:
        raise _not_an_object(path) from None


def _not_an_object(path: Path) -> DatasetError:
    return DatasetError("the top level is not a JSON object", where=str(path),
                        fix="a COCO file is an object with 'images', 'annotations' and 'categories' lists")


def _reencode_with_python_json(path: Path) -> bytes:
    """Slow path for files that are not strict JSON; Python's json accepts the NaN / Infinity it writes itself."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle, parse_constant=lambda _token: None)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text: {exc}", where=str(path), fix="save the JSON as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", where=str(path),
            fix="repair the file (e.g. re-export it); `python -m json.tool FILE` shows the spot",
        ) from None
    return json_encoder.encode(data)
