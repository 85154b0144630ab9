"""Images that must stay in one split: augmented copies of one photo, frames of one clip, exact duplicates.

Roboflow exports several augmented copies of each photo and records the source in `images[].extra.name`; splitting
copies of one photo into train and test measures memory, not generalisation. Images are grouped by that source (or
by `--group-by REGEX` on the file name) and whole groups are split; exact duplicates that still land in different
splits are reported.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mlcore.errors import DatasetError

# Roboflow's file names: <source name>.rf.<32 hex digits>.<ext>; the part before `.rf.` names the source photo.
ROBOFLOW_NAME = re.compile(r"^(?P<source>.+)\.rf\.[0-9a-f]{32}\.[A-Za-z0-9]+$")


class _Extra(msgspec.Struct):
    name: str | None = None


class _ImageExtra(msgspec.Struct):
    extra: _Extra | None = None


_extra_decoder = msgspec.json.Decoder(_ImageExtra)


@dataclass(frozen=True)
class ImageGroups:
    group_of: dict[int, str]  # image id -> group key
    source: str  # what the groups came from, for the report

    @property
    def count(self) -> int:
        return len(set(self.group_of.values()))


def compile_group_by(pattern: str | None) -> re.Pattern[str] | None:
    """The --group-by expression, checked before the long work."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"--group-by '{pattern}' is not a regular expression: {exc}", where="--group-by",
                           fix="e.g. --group-by '^(.+)_frame_\\d+' groups the frames of one clip (the first group, "
                           "or the whole match, is the key)") from None


def image_groups(images: Iterable[tuple[int, str, bytes | msgspec.Raw]],
                 group_by: re.Pattern[str] | None) -> ImageGroups:
    """Group key per image: --group-by's match, else the export's record of the source photo, else the image alone.

    `images` yields (id, file_name, raw image record)."""
    images = list(images)
    if group_by is not None:
        return ImageGroups({image_id: _match_key(group_by, name) or f"\0{image_id}" for image_id, name, _ in images},
                           f"--group-by '{group_by.pattern}'")
    sources: dict[int, str] = {}
    for image_id, _, record in images:
        try:
            extra = _extra_decoder.decode(record).extra
        except (msgspec.ValidationError, msgspec.DecodeError):
            extra = None
        if extra is not None and extra.name:
            sources[image_id] = extra.name
    if sources:
        return ImageGroups({image_id: sources.get(image_id, f"\0{image_id}") for image_id, _, _ in images},
                           "the source photo recorded by the export (images[].extra.name)")
    roboflow = {image_id: match["source"] for image_id, name, _ in images
                if (match := ROBOFLOW_NAME.match(Path(name).name))}
    if roboflow:
        return ImageGroups({image_id: roboflow.get(image_id, f"\0{image_id}") for image_id, _, _ in images},
                           "the source photo in Roboflow's file names (<source>.rf.<hash>)")
    return ImageGroups({image_id: f"\0{image_id}" for image_id, _, _ in images}, "")


def _match_key(pattern: re.Pattern[str], name: str) -> str | None:
    match = pattern.search(name)
    if match is None:
        return None
    return match.group(1) if pattern.groups else match.group(0)


def duplicates_across_splits(images_root: Path, file_names: Mapping[int, str],
                             split_of: Mapping[int, str]) -> list[tuple[str, str, str, str]]:
    """(name, split, name, split) for files with identical bytes in different splits.

    Only files of equal size are hashed, so a dataset without duplicates costs one stat per image."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for image_id, name in file_names.items():
        try:
            by_size[(images_root / name).stat().st_size].append(image_id)
        except OSError:
            continue
    pairs = []
    for ids in by_size.values():
        if len({split_of[i] for i in ids}) < 2:
            continue
        by_digest: dict[str, list[int]] = defaultdict(list)
        for image_id in ids:
            by_digest[_sha256(images_root / file_names[image_id])].append(image_id)
        for same in by_digest.values():
            first = same[0]
            pairs += [(file_names[first], split_of[first], file_names[other], split_of[other])
                      for other in same[1:] if split_of[other] != split_of[first]]
    return pairs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
