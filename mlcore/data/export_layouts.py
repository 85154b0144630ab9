"""Labelling-tool export folders: which layout a folder is, and one COCO file that keeps the export's own splits.

A user points `--data` at what Roboflow, CVAT, Label Studio or COCO itself handed them. Each tool lays its splits
out differently; merging them here means validation runs once over one file, and the export's split of every image
(`split_of_image`) survives, instead of being replaced by a random split.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcore.data.images import choose_image_root, find_image_root, normalize_file_name
from mlcore.errors import DatasetError
from mlcore.io import write_json_atomic

MERGED_FILE_NAME = "merged_export.json"
ROBOFLOW_FILE = "_annotations.coco.json"
LABEL_STUDIO_FILE = "result.json"
INSTANCES_PATTERN = "instances_*.json"  # person_keypoints_*, panoptic_*, captions_* are other tasks: not ours

# What each layout looks like, for the message when a folder matches none of them.
LAYOUTS_LOOKED_FOR = (
    "Roboflow: train/, valid/, test/ each holding _annotations.coco.json and its images (or one "
    "_annotations.coco.json beside the images)",
    "CVAT: annotations/instances_<subset>.json with the images in images/ (or images/<subset>/)",
    "Label Studio: result.json with the images in images/",
    "COCO: annotations/instances_<split>.json with the images in <split>/ (e.g. instances_train2017.json + "
    "train2017/)",
    "single file: exactly one COCO JSON (a JSON with an 'images' list) in the folder",
)
LAYOUT_NAMES = {"roboflow": "Roboflow", "cvat": "CVAT", "label_studio": "Label Studio", "coco": "COCO",
                "single_json": "single COCO file"}

_SPLIT_ALIASES = {"valid": "val", "validation": "val", "default": None}  # CVAT's 'default' subset means no split
_YEAR_SUFFIX = re.compile(r"^(.+?)((19|20)\d\d)$")  # COCO's train2017 / val2014


@dataclass(frozen=True)
class ExportPart:
    """One annotation file of an export and the folder its file names are relative to."""

    split: str | None  # 'train' / 'val' / 'test' / another subset name; None when the export has no split here
    annotation_file: Path
    images_dir: Path


@dataclass(frozen=True)
class ExportLayout:
    """Which tool's layout a folder is, and its parts (one per split)."""

    kind: str  # 'roboflow' | 'cvat' | 'label_studio' | 'coco' | 'single_json'
    parts: list[ExportPart]

    @property
    def splits(self) -> list[str]:
        """The export's own split names, in part order (empty when it has none)."""
        return list(dict.fromkeys(part.split for part in self.parts if part.split is not None))

    def describe(self) -> str:
        """One line for the user: what was recognised and from which files."""
        root = Path(os.path.commonpath([str(part.annotation_file.parent) for part in self.parts]))
        parts = ", ".join(f"{part.split or 'no split'}: {part.annotation_file.relative_to(root.parent)}"
                          for part in self.parts)
        return f"recognised a {LAYOUT_NAMES.get(self.kind, self.kind)} export ({parts})"


@dataclass(frozen=True)
class MergedExport:
    """The merged COCO file, where its images are, and each merged image's split in the export."""

    annotation_file: Path
    images_root: Path  # `images_root / file_name` is each image's file
    split_of_image: dict[int, str]  # merged image id -> split; images of a part with no split are absent
    layout: ExportLayout
    notes: list[str] = field(default_factory=list)  # things a person may want to know (ids remapped, ...)


def normalise_split(name: str) -> str | None:
    """'valid' and 'validation' -> 'val', 'train2017' -> 'train', CVAT's 'default' -> None; other names lowercased."""
    name = name.strip().lower()
    year = _YEAR_SUFFIX.match(name)
    if year:
        name = year.group(1)
    return _SPLIT_ALIASES.get(name, name)


def recognise_export(folder: Path) -> ExportLayout:
    """The layout of an export folder; a DatasetError listing the layouts looked for when it is none of them."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise DatasetError("is not a folder", where=str(folder), fix="pass the export folder or the annotation JSON")
    for recognise in (_roboflow, _annotations_folder, _label_studio, _single_json):
        layout = recognise(folder)
        if layout is not None:
            return layout
    lines = "\n".join(f"  - {line}" for line in LAYOUTS_LOOKED_FOR)
    message = f"not a labelling-tool export layout; looked for:\n{lines}"
    other_tasks = sorted(path.name for path in folder.glob("annotations/*.json"))
    if other_tasks:
        message += f"\n  annotations/ holds only {', '.join(other_tasks)} (only instances_*.json files are read)"
    raise DatasetError(message, where=str(folder),
                       fix="pass the annotation file itself: --data path/to/annotations.json")


def _roboflow(folder: Path) -> ExportLayout | None:
    split_files = sorted(folder.glob(f"*/{ROBOFLOW_FILE}"))
    if split_files:
        parts = [_part(normalise_split(path.parent.name), path) for path in split_files]
        return ExportLayout("roboflow", _order(parts))
    if (folder / ROBOFLOW_FILE).is_file():
        return ExportLayout("roboflow", [_part(None, folder / ROBOFLOW_FILE)])
    return None


def _annotations_folder(folder: Path) -> ExportLayout | None:
    """CVAT and COCO both write annotations/instances_<subset>.json; the images folder tells them apart."""
    files = sorted((folder / "annotations").glob(INSTANCES_PATTERN))
    if not files:
        return None
    subsets = [path.stem[len("instances_"):] for path in files]
    coco = any((folder / subset).is_dir() or _YEAR_SUFFIX.match(subset.lower()) for subset in subsets)
    parts = [_part(normalise_split(subset), path, preferred=[folder / "images" / subset, folder / subset])
             for subset, path in zip(subsets, files)]
    return ExportLayout("coco" if coco else "cvat", _order(parts))


def _label_studio(folder: Path) -> ExportLayout | None:
    if (folder / LABEL_STUDIO_FILE).is_file() and (folder / "images").is_dir():
        return ExportLayout("label_studio", [_part(None, folder / LABEL_STUDIO_FILE)])
    return None


def _single_json(folder: Path) -> ExportLayout | None:
    coco_files = [path for path in sorted(folder.glob("*.json")) if _looks_like_coco(path)]
    if len(coco_files) == 1:
        return ExportLayout("single_json", [_part(None, coco_files[0])])
    return None


def _looks_like_coco(path: Path) -> bool:
    try:
        data = _read_json(path)
    except DatasetError:
        return False
    return isinstance(data, dict) and isinstance(data.get("images"), list)


_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def _order(parts: list[ExportPart]) -> list[ExportPart]:
    """train, val, test first (merged ids then read in that order), other subsets after them by name."""
    return sorted(parts, key=lambda part: (_SPLIT_ORDER.get(part.split or "", 3), part.split or ""))


def _part(split: str | None, annotation_file: Path, preferred: Sequence[Path] = ()) -> ExportPart:
    return ExportPart(split, annotation_file, _images_dir(annotation_file, preferred))


def _images_dir(annotation_file: Path, preferred: Sequence[Path]) -> Path:
    """The folder holding most of the file's images: PREFERRED folders (CVAT's images/<subset>/, COCO's <split>/)
    win a tie over the project's usual search, which does not look in images/<subset>/."""
    names = _file_names(annotation_file)
    best, best_hits = None, 0
    for folder in preferred:
        if folder.is_dir():
            found = find_image_root(annotation_file, names, folder)
            if found.hits > best_hits:
                best, best_hits = found.root, found.hits
    usual = find_image_root(annotation_file, names)
    if best is not None and best_hits >= usual.hits:
        return best
    if usual.found_none:
        return choose_image_root(annotation_file, names)  # raises, naming the folders tried
    return usual.root


def _file_names(annotation_file: Path) -> list[str]:
    data = _read_json(annotation_file)
    images = data.get("images") if isinstance(data, dict) else None
    return [image["file_name"] for image in images or [] if isinstance(image, dict)
            and isinstance(image.get("file_name"), str)]


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot be read as JSON: {error}", where=str(path),
                           fix="re-export the annotations from the labelling tool") from error


def merge_export(layout: ExportLayout, output_dir: Path) -> MergedExport:
    """Write the export's parts as one COCO file in OUTPUT_DIR; the parts' own files are only read.

    Image and annotation ids are renumbered 1..N across parts, file names made relative to the parts' deepest
    common images folder, and categories matched by name (the first part's ids win). Every other key is kept.
    """
    output_path = Path(output_dir).absolute() / MERGED_FILE_NAME
    if any(output_path == part.annotation_file.absolute() for part in layout.parts):
        raise DatasetError("the merged file would overwrite the export's own annotations", where=str(output_path),
                           fix="pick an output folder outside the export")
    root = Path(os.path.commonpath([str(part.images_dir.absolute()) for part in layout.parts]))
    merged: dict[str, Any] = {}
    images: list[Any] = []
    annotations: list[Any] = []
    categories = _CategoryMerge()
    split_of_image: dict[int, str] = {}
    notes = [layout.describe()]
    listed_in: dict[str, Path] = {}  # merged file_name -> the annotation file that listed it first
    next_image, next_annotation = 1, 1
    for part in layout.parts:
        data = _read_json(part.annotation_file)
        if not isinstance(data, dict):
            raise DatasetError("is not a COCO object (expected {'images': [...], ...})",
                               where=str(part.annotation_file), fix="pass the COCO annotation file with --data")
        for key, value in data.items():
            if key not in ("images", "annotations", "categories"):
                merged.setdefault(key, value)  # info, licenses, ...: the first part's
        category_ids = categories.add(_list(data.get("categories")), part, notes)
        image_ids: dict[Any, int] = {}
        for image in _list(data.get("images")):
            if not isinstance(image, dict):
                images.append(image)  # kept as written: validation reports it
                continue
            record, old_id = dict(image), image.get("id")
            record["id"], next_image = next_image, next_image + 1
            if not _hashable(old_id):
                pass
            elif old_id in image_ids:
                notes.append(f"{part.annotation_file}: image id {old_id} appears more than once; its annotations go "
                             "to the first image with it")
            else:
                image_ids[old_id] = record["id"]
            if isinstance(record.get("file_name"), str):
                record["file_name"] = _relative_name(record["file_name"], part, root, notes)
                _note_listed_twice(record["file_name"], part, listed_in, notes)
            images.append(record)
            if part.split is not None:
                split_of_image[record["id"]] = part.split
        dangling = 0
        for annotation in _list(data.get("annotations")):
            if not isinstance(annotation, dict):
                annotations.append(annotation)
                continue
            old_image = annotation.get("image_id")
            if not _hashable(old_image) or old_image not in image_ids:
                dangling += 1  # its image id would mean a different image after renumbering
                continue
            record = dict(annotation)
            record["id"], next_annotation = next_annotation, next_annotation + 1
            record["image_id"] = image_ids[old_image]
            if _hashable(record.get("category_id")) and record["category_id"] in category_ids:
                record["category_id"] = category_ids[record["category_id"]]
            annotations.append(record)
        if dangling:
            notes.append(f"{part.annotation_file}: {dangling} annotation(s) point to no image in that file; left out")
    merged.update(images=images, annotations=annotations, categories=categories.records)
    write_json_atomic(output_path, merged)
    return MergedExport(output_path, root, split_of_image, layout, notes)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


class _CategoryMerge:
    """Categories by name across parts: a later part's id maps to the first part's id for the same name."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self._parts = 0
        self._by_name: dict[Any, Any] = {}  # name -> merged id (the first one seen)
        self._pairs: set[tuple[Any, Any]] = set()  # (id, name) already merged

    def add(self, part_categories: list, part: ExportPart, notes: list[str]) -> dict[Any, Any]:
        """Merge one part's categories; returns its old id -> merged id."""
        first_part, self._parts = self._parts == 0, self._parts + 1
        mapping: dict[Any, Any] = {}
        for category in part_categories:
            if not isinstance(category, dict) or not _hashable(category.get("id")):
                if first_part:
                    self.records.append(category)  # kept as written: validation reports it
                continue
            old_id, name = category["id"], category.get("name")
            key = name if _hashable(name) else None
            if first_part:
                new_id, is_new = old_id, True  # the first part's categories stay exactly as written
            elif (old_id, key) in self._pairs:
                new_id, is_new = old_id, False  # Roboflow repeats a name under two ids (placeholder 0): keep pairs
            elif key is not None and key in self._by_name:
                new_id, is_new = self._by_name[key], False
                notes.append(f"{part.annotation_file}: category '{name}' has id {old_id} here and {new_id} in an "
                             f"earlier part; used {new_id}")
            else:
                new_id, is_new = self._fresh_id(), True
                notes.append(f"{part.annotation_file}: category '{name}' is in no earlier part; given id {new_id}")
            if is_new:
                self.records.append({**category, "id": new_id})
                self._pairs.add((new_id, key))
                if key is not None:
                    self._by_name.setdefault(key, new_id)
            mapping.setdefault(old_id, new_id)
        return mapping

    def _fresh_id(self) -> int:
        numbers = [record["id"] for record in self.records
                   if isinstance(record, dict) and isinstance(record.get("id"), int)]
        return max(numbers, default=0) + 1


def _relative_name(file_name: str, part: ExportPart, root: Path, notes: list[str]) -> str:
    """FILE_NAME relative to ROOT, so `root / name` is the same file `part.images_dir / file_name` was."""
    path = os.path.normpath(part.images_dir.absolute() / normalize_file_name(file_name))
    relative = os.path.relpath(path, root)
    if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
        notes.append(f"{part.annotation_file}: '{file_name}' lies outside {root}; kept as written")
        return file_name
    return Path(relative).as_posix()


def _note_listed_twice(file_name: str, part: ExportPart, listed_in: dict[str, Path], notes: list[str]) -> None:
    """The same file in two splits would leak between training and evaluation."""
    first = listed_in.setdefault(file_name, part.annotation_file)
    if first != part.annotation_file:
        notes.append(f"{file_name} is listed in both {first} and {part.annotation_file}")


def _hashable(value: Any) -> bool:
    """Ids usable as dict keys; a list or dict id is left for validation to report."""
    return isinstance(value, (int, str, float))
