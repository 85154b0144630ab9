"""Files that are passed as a COCO instances file but are something else, each named with the way to convert it.

Recognising looks at the first few records only, so it costs nothing next to reading the file, and it only names
files that were going to be refused anyway (or, for panoptic files, would drown in schema errors): a file with an
'images' list is never taken for a VIA or labelme file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
import msgspec

from mlcore.errors import DatasetError

SAMPLE = 5  # records looked at per list
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_string_decoder = msgspec.json.Decoder(str)

_RESULTS = ("a detection results file (model predictions), not a dataset",
            "pass the ground-truth COCO instances file (an object with 'images', 'annotations' and 'categories'); "
            "to score these predictions run `mlcore evaluate --data GROUND_TRUTH.json --predictions {file}`")
_LABEL_STUDIO_FIX = ("in Label Studio, open the project and choose Export -> 'COCO' (it writes result.json and "
                     "images/), then pass that result.json")
_LABEL_STUDIO = ("a Label Studio JSON task export, not a COCO instances file", _LABEL_STUDIO_FIX)
_LABEL_STUDIO_MIN = ("a Label Studio JSON-MIN export, not a COCO instances file", _LABEL_STUDIO_FIX)
_VIA_EXPORT = "then choose Annotation -> Export Annotations (COCO format) and pass the file it saves"
_VIA_PROJECT = ("a VIA (VGG Image Annotator) project file, not a COCO instances file",
                f"in VIA, open it with Project -> Load, {_VIA_EXPORT}")
_VIA_ANNOTATIONS = ("a VIA (VGG Image Annotator) annotation file, not a COCO instances file",
                    f"in VIA, add the images, load it with Annotation -> Import Annotations (from json), {_VIA_EXPORT}")
_LABELME = ("a labelme file (the shapes of one image), not a COCO instances file",
            "convert the folder of labelme JSON files with labelme's examples/instance_segmentation/labelme2coco.py "
            "(`labelme2coco.py LABELME_DIR OUT_DIR --labels labels.txt`) and pass OUT_DIR/annotations.json")
_PANOPTIC = ("a COCO panoptic file (annotations hold 'segments_info' and point at PNG masks), "
             "not a COCO instances file",
             "convert it with panopticapi's converters/panoptic2detection_coco_format.py (`--input_json_file {file} "
             "--segmentations_folder PNG_FOLDER --output_json_file instances.json`) and pass instances.json")


def git_lfs_pointer(head: bytes, where: str) -> DatasetError | None:
    """The error for a Git LFS pointer (the small text file Git leaves when the real file was not pulled)."""
    if not head.startswith(GIT_LFS_POINTER):
        return None
    size = re.search(rb"^size (\d+)", head, re.MULTILINE)
    of_size = f" ({int(size.group(1)):,} bytes)" if size else ""
    return DatasetError(f"a Git LFS pointer, not the file: the real file{of_size} was never downloaded", where=where,
                        fix="run `git lfs pull` in the repository (after `git lfs install` if Git LFS is new here), "
                            "then pass the file again")


def recognise(top: dict[str, msgspec.Raw] | list[msgspec.Raw], where: str,
              annotations: Sequence[msgspec.Raw] = ()) -> DatasetError | None:
    """The error naming what a non-instances file is, from its top level (and first annotations); None if unknown."""
    kind = _list_kind(top) if isinstance(top, list) else _object_kind(top, annotations)
    return DatasetError(kind[0], where=where, fix=kind[1].format(file=shlex.quote(where))) if kind else None


def keypoints_note(categories: Sequence[msgspec.Raw], annotations: Sequence[msgspec.Raw]) -> str | None:
    """A sentence for files with keypoints (COCO person keypoints and the like), which mlcore does not train on."""
    if any("keypoints" in keys for keys in _sample_keys(categories)) or any(
            keys & {"keypoints", "num_keypoints"} for keys in _sample_keys(annotations)):
        return "the file has keypoints: they are ignored (mlcore uses the boxes and masks)"
    return None


def scores_note(annotations: Sequence[msgspec.Raw]) -> str | None:
    """A sentence for ground truth whose annotations carry `score`: a file mixed up with predictions, or test data."""
    if any("score" in keys for keys in _sample_keys(annotations)):
        return ("annotations carry a 'score', which ground truth does not have: is this a predictions file? Every "
                "annotation is used as ground truth and the scores are ignored")
    return None


def _list_kind(items: list[msgspec.Raw]) -> tuple[str, str] | None:
    sample = _sample_keys(items)
    if not sample or len(sample) < min(len(items), SAMPLE):  # empty, or not a list of objects
        return None
    if all({"image_id", "category_id", "score"} <= keys and keys & {"bbox", "segmentation"} for keys in sample):
        return _RESULTS
    if all("data" in keys and keys & {"annotations", "predictions"} for keys in sample):
        return _LABEL_STUDIO
    if all({"annotation_id", "annotator"} <= keys for keys in sample):
        return _LABEL_STUDIO_MIN
    return None


def _object_kind(top: dict[str, msgspec.Raw], annotations: Sequence[msgspec.Raw]) -> tuple[str, str] | None:
    if "images" not in top:
        if "_via_img_metadata" in top or "_via_settings" in top:
            return _VIA_PROJECT
        if {"shapes", "imagePath"} <= top.keys():
            return _LABELME
        values = _sample_keys(list(top.values()))
        if values and len(values) == min(len(top), SAMPLE) and all({"filename", "regions"} <= keys
                                                                    for keys in values):
            return _VIA_ANNOTATIONS
        return None
    if annotations and all(_is_panoptic(record) for record in annotations[:SAMPLE]):
        return _PANOPTIC
    return None


def _is_panoptic(record: msgspec.Raw) -> bool:
    try:
        fields = _object_decoder.decode(record)
    except msgspec.DecodeError:
        return False
    if "bbox" in fields or "segmentation" in fields:
        return False
    if "segments_info" in fields:
        return True
    try:
        return "file_name" in fields and _string_decoder.decode(fields["file_name"]).lower().endswith(".png")
    except msgspec.DecodeError:
        return False


def _sample_keys(records: Sequence[msgspec.Raw]) -> list[set[str]]:
    """The keys of the first few records, stopping at the first one that is not a JSON object."""
    keys = []
    for record in records[:SAMPLE]:
        try:
            keys.append(set(_object_decoder.decode(record)))
        except msgspec.DecodeError:
            break
    return keys
