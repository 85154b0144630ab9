"""Every COCO rule we check, record by record, producing findings and the cleaned records.

Images are checked first (sizes are needed to clip boxes), then categories, then annotations. Records that cannot
be used are dropped from the cleaned copy with a finding; records we can repair are repaired with a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mlcore.data.coco_reader import RawCoco
from mlcore.data.coco_schema import CocoAnnotation, CocoCategory, CocoImage, json_path, replace_fields
from mlcore.data.findings import Findings
from mlcore.data.images import ImageCheck, is_safe_relative, probe_images
from mlcore.data.masks import MaskGeometry, SegmentationProblem, clean_polygon_parts, polygon_geometry, rle_geometry
from mlcore.data.masks import segmentation_kind
from mlcore.data.spool import RecordSpool, Spooled

# A given box this far (in pixels, on any side) from its mask's tight box is worth a person's look.
BOX_MASK_DISAGREEMENT_PX = 2.0
# Exporters often round a box edge a hair past the border; clipping that is not worth a person's attention.
SILENT_CLIP_PX = 1.0


@dataclass(slots=True)
class ImageRecord:
    index: int
    id: int
    file_name: str
    width: int
    height: int
    out: bytes | msgspec.Raw


@dataclass(slots=True)
class AnnotationRecord:
    image_id: int
    category_id: int
    iscrowd: bool
    area: float
    has_mask: bool
    bbox_given: bool
    out: Spooled | msgspec.Raw  # repaired records live in the spool, unchanged ones stay slices of the input


@dataclass
class ValidatedCoco:
    images: list[ImageRecord]
    categories: list[CocoCategory]
    category_records: list[msgspec.Raw]
    annotations: list[AnnotationRecord]
    findings: Findings
    images_root: Path
    spool: RecordSpool
    boxes_from_masks: int = 0
    renumbered_annotations: int = 0
    category_positions: dict[int, int] = field(default_factory=dict)  # category id -> index in the file
    extra_top_level: dict[str, msgspec.Raw] = field(default_factory=dict)


def validate_coco(raw: RawCoco, images_root: Path, image_check: ImageCheck, progress: bool = True,
                  spool_dir: Path | None = None) -> ValidatedCoco:
    """Check every record; the caller closes `result.spool` (a temp file in `spool_dir`) when done writing."""
    findings = Findings()
    if raw.non_standard_numbers:
        findings.warning(
            "non_standard_json", str(raw.path),
            "the file has NaN or Infinity literals, which JSON does not allow; they were read as missing values",
            "fix the tool that exported it (Python: json.dump(..., allow_nan=False) shows where)",
        )
    images, listed_image_ids = _validate_images(raw, images_root, image_check, findings, progress)
    categories, category_records, positions = _validate_categories(raw, findings)
    result = ValidatedCoco(images=images, categories=categories, category_records=category_records,
                           annotations=[], findings=findings, images_root=images_root, category_positions=positions,
                           spool=RecordSpool(spool_dir))
    _validate_annotations(raw, result, listed_image_ids)
    return result


def _required_fields(kind: type) -> list[str]:
    info = msgspec.inspect.type_info(kind)
    return [f"'{field.name}'" for field in info.fields if field.required]


def _decode_records(records: list[msgspec.Raw], kind: type, prefix: str, findings: Findings) -> Iterator[tuple]:
    """Yield (index, typed record, raw) for each record that matches the schema; one finding per one that doesn't."""
    decoder = msgspec.json.Decoder(kind)
    for index, record in enumerate(records):
        where = f"{prefix}[{index}]"
        try:
            yield index, decoder.decode(record), record
        except msgspec.ValidationError as exc:
            message, _, location = str(exc).partition(" - at `")
            findings.error(
                "schema", json_path(where, location.rstrip("`")) if location else where, message,
                f"each entry of '{prefix}' needs {', '.join(_required_fields(kind))} of the right types "
                "(see docs/ANNOTATION_FORMATS.md)",
            )
        except msgspec.DecodeError as exc:  # only reachable for records re-encoded from the slow path
            findings.error("schema", where, str(exc), "repair the record")


def _validate_images(raw: RawCoco, root: Path, check: ImageCheck, findings: Findings,
                     progress: bool) -> tuple[list[ImageRecord], set[int]]:
    """The usable images, and the ids of every listed image (a rejected image's annotations are not orphans)."""
    typed: list[tuple[int, CocoImage, msgspec.Raw]] = []
    seen_ids: dict[int, int] = {}
    seen_files: dict[str, int] = {}
    for index, image, record in _decode_records(raw.images, CocoImage, "images", findings):
        where = f"images[{index}]"
        if image.id in seen_ids:
            findings.error("duplicate_image_id", f"{where}.id",
                           f"image id {image.id} is already used by images[{seen_ids[image.id]}]",
                           "give every image a unique id (annotations refer to images by id)")
            continue
        seen_ids[image.id] = index
        if not is_safe_relative(image.file_name):
            findings.error("file_name_escapes_root", f"{where}.file_name",
                           f"'{image.file_name}' is absolute or leaves the image folder",
                           "use a path relative to the image folder without '..', and pass that folder with --images")
            continue
        if image.file_name in seen_files:
            findings.warning("duplicate_file_name", f"{where}.file_name",
                             f"'{image.file_name}' is also used by images[{seen_files[image.file_name]}]",
                             "merge the two image entries so each file appears once")
        seen_files.setdefault(image.file_name, index)
        typed.append((index, image, record))

    if check == "none":
        probes = [None] * len(typed)
    else:
        probes = probe_images((root / image.file_name for _, image, _ in typed), check,
                              total=len(typed), progress=progress)
    records: list[ImageRecord] = []
    for (index, image, record), probe in zip(typed, probes):
        where = f"images[{index}]"
        width, height, out = _whole(image.width), _whole(image.height), record
        if probe is not None and probe.problem == "missing":
            findings.error("image_missing", f"{where}.file_name", f"{root / image.file_name} does not exist",
                           "copy the image there, pass the right folder with --images, or remove the entry")
            continue
        if probe is not None and probe.problem:
            findings.error("image_unreadable", f"{where}.file_name", f"{root / image.file_name} is {probe.problem}",
                           "replace the file with a valid JPEG/PNG or remove the entry")
            continue
        if width is None or height is None or width <= 0 or height <= 0:
            if probe is None:
                findings.error("image_size_missing", where, "width/height missing, fractional or not positive: "
                               f"width={_shown(image.width)}, height={_shown(image.height)}",
                               "write the image's width and height, or run with image checks on to read them")
                continue
            width, height = probe.size
            out = replace_fields(record, width=width, height=height)
            findings.warning("image_size_filled", where,
                             f"width/height ({_shown(image.width)}x{_shown(image.height)}) missing, fractional or not "
                             f"positive; read {width}x{height} from the file", "nothing to do: the cleaned copy has them")
        elif probe is not None and probe.size != (width, height):
            hint = (" The file's EXIF orientation rotates it: the JSON may describe the rotated image."
                    if probe.exif_transposed and probe.size == (height, width) else "")
            findings.error("image_size_mismatch", where,
                           f"JSON says {width}x{height} but {image.file_name} is {probe.size[0]}x{probe.size[1]}."
                           + hint, "correct width/height (and annotations, if they were made on another size)")
            continue
        records.append(ImageRecord(index, image.id, image.file_name, width, height, out))
    if not raw.images:
        findings.error("no_images", "images", "the file lists no images", "export the dataset with its images")
    return records, set(seen_ids)


def _validate_categories(
    raw: RawCoco, findings: Findings
) -> tuple[list[CocoCategory], list[msgspec.Raw], dict[int, int]]:
    categories: list[CocoCategory] = []
    records: list[msgspec.Raw] = []
    ids: dict[int, int] = {}
    names: dict[str, int] = {}
    for index, category, record in _decode_records(raw.categories, CocoCategory, "categories", findings):
        where = f"categories[{index}]"
        if category.id in ids:
            findings.error("duplicate_category_id", f"{where}.id",
                           f"category id {category.id} is already used by categories[{ids[category.id]}]",
                           "give every category a unique id")
            continue
        key = category.name.strip().lower()
        if key in names:
            findings.error("duplicate_category_name", f"{where}.name",
                           f"category name '{category.name}' is already used by categories[{names[key]}]",
                           "rename one, or merge the two categories (and their annotations) into one")
            continue
        ids[category.id] = index
        names[key] = index
        categories.append(category)
        records.append(record)
    if not raw.categories:
        findings.error("no_categories", "categories", "the file lists no categories",
                       "add a 'categories' entry per class: {\"id\": 1, \"name\": \"car\"}")
    return categories, records, ids


def _validate_annotations(raw: RawCoco, result: ValidatedCoco, listed_image_ids: set[int]) -> None:
    findings = result.findings
    images = {image.id: image for image in result.images}
    category_ids = {category.id for category in result.categories}
    seen_ids: set[int] = set()
    duplicates: list[int] = []  # positions in result.annotations whose id must be renumbered
    max_id = 0
    segmentation_decoder = msgspec.json.Decoder()
    for index, ann, record in _decode_records(raw.annotations, CocoAnnotation, "annotations", findings):
        where = f"annotations[{index}]"
        image = images.get(ann.image_id)
        if image is None:
            if ann.image_id not in listed_image_ids:
                findings.error("unknown_image_id", f"{where}.image_id", f"no image has id {ann.image_id}",
                               "point image_id at an existing image or add the image")
            continue  # the image itself was rejected: its finding already says why
        if ann.category_id not in category_ids:
            findings.error("unknown_category_id", f"{where}.category_id", f"no category has id {ann.category_id}",
                           "use an id from 'categories' or add the missing category")
            continue
        findings_before = len(findings)
        geometry, segmentation = _mask_geometry(ann, segmentation_decoder, image, where, findings)
        # With a mask, the given box only matters for the mismatch check: its own defects are moot.
        bbox = _given_box(ann, image, where, findings if geometry is None else Findings())
        if geometry is not None:
            if bbox is not None and _disagrees(bbox, geometry.bbox):
                findings.warning("bbox_mask_mismatch", f"{where}.bbox",
                                 f"bbox {_fmt(bbox)} differs from its mask's tight box {_fmt(geometry.bbox)} by more "
                                 f"than {BOX_MASK_DISAGREEMENT_PX:g} px; the mask's box is used",
                                 "check this annotation: box and mask should outline the same object")
            new_bbox, area = geometry.bbox, geometry.area
            result.boxes_from_masks += 1
        elif bbox is not None:
            new_bbox = bbox
            given_area_usable = ann.area is not None and math.isfinite(ann.area) and ann.area > 0
            area = ann.area if given_area_usable and bbox == tuple(ann.bbox) else bbox[2] * bbox[3]
        else:
            if len(findings) == findings_before:  # otherwise a box or mask finding already says why
                findings.warning("annotation_empty", where, "has neither a bbox nor a segmentation; dropped",
                                 "give it a bbox [x, y, width, height] or a segmentation")
            continue
        fields: dict[str, Any] = {}
        if ann.bbox is None or not _same(ann.bbox, new_bbox) or ann.area is None or not _same([ann.area], [area]):
            fields.update(bbox=[round(v, 3) for v in new_bbox], area=round(area, 3))
        if segmentation is not KEEP:
            fields["segmentation"] = segmentation
        out = result.spool.put(replace_fields(record, **fields)) if fields else record
        if ann.id in seen_ids:
            duplicates.append(len(result.annotations))
            findings.warning("duplicate_annotation_id", f"{where}.id",
                             f"annotation id {ann.id} is used more than once; this one gets a new id",
                             "give every annotation a unique id")
        seen_ids.add(ann.id)
        max_id = max(max_id, ann.id)
        result.annotations.append(AnnotationRecord(
            image_id=ann.image_id, category_id=ann.category_id, iscrowd=bool(ann.iscrowd), area=area,
            has_mask=geometry is not None, bbox_given=ann.bbox is not None, out=out,
        ))
    for offset, position in enumerate(duplicates, start=1):
        record = result.annotations[position]
        record.out = result.spool.put(replace_fields(result.spool.get(record.out), id=max_id + offset))
    result.renumbered_annotations = len(duplicates)


KEEP = object()  # the segmentation goes to the cleaned copy as it was
_polygon_decoder = msgspec.json.Decoder(list[list[float]])


def _mask_geometry(ann: CocoAnnotation, decoder: msgspec.json.Decoder, image: ImageRecord, where: str,
                   findings: Findings) -> tuple[MaskGeometry | None, Any]:
    """The mask's box and area, and what the cleaned copy's segmentation becomes (KEEP, repaired parts or [])."""
    if not ann.segmentation:
        return None, KEEP
    try:  # the common case, decoded typed: every coordinate is then known to be a finite number
        segmentation, numeric = _polygon_decoder.decode(ann.segmentation), True
        kind = "polygon" if segmentation else "none"
    except msgspec.ValidationError:
        segmentation, numeric = decoder.decode(ann.segmentation), False
        kind = segmentation_kind(segmentation)
    path = f"{where}.segmentation"
    if kind == "none":
        return None, KEEP
    if kind == "unknown":
        findings.warning("segmentation_unrecognized", path,
                         "is neither polygons (a list of [x1, y1, x2, y2, ...] lists) nor RLE ({size, counts}); "
                         "removed from the cleaned copy", "write polygons or RLE as in docs/ANNOTATION_FORMATS.md")
        return None, []
    replacement: Any = KEEP
    try:
        if kind in ("polygon", "flat_polygon"):
            if kind == "flat_polygon":
                findings.warning("polygon_not_nested", path, "is a flat coordinate list; read as one polygon",
                                 "COCO polygons are a list of parts: [[x1, y1, x2, y2, ...]]")
                segmentation = [segmentation]
            parts, notes = clean_polygon_parts(segmentation, numeric=numeric)
            for note in notes:
                findings.warning("polygon_invalid_part", path, f"{note}; that part is dropped",
                                 "a polygon part is a flat list of at least 3 (x, y) points")
            if kind == "flat_polygon" or notes:
                replacement = parts
            if not parts:
                return None, []
            geometry = polygon_geometry(parts, image.height, image.width)
        else:
            geometry = rle_geometry(segmentation, image.height, image.width)
    except SegmentationProblem as problem:
        findings.warning(problem.code, path, f"{problem}; the mask is removed from the cleaned copy", problem.fix)
        return None, []
    if geometry.area <= 0 or geometry.bbox[2] <= 0 or geometry.bbox[3] <= 0:
        findings.warning("mask_empty", path, "the mask covers no pixel inside the image; removed from the cleaned "
                         "copy", "check the coordinates are in pixels of this image")
        return None, []
    return geometry, replacement


def _given_box(ann: CocoAnnotation, image: ImageRecord, where: str,
               findings: Findings) -> tuple[float, float, float, float] | None:
    """The annotation's own bbox, clipped to the image; None when it is absent or unusable (with a finding)."""
    if ann.bbox is None:
        return None
    path = f"{where}.bbox"
    if len(ann.bbox) != 4:
        findings.warning("bbox_malformed", path, f"has {len(ann.bbox)} values, not 4; the annotation is dropped",
                         "write the box as [x, y, width, height]")
        return None
    if not all(value is not None and math.isfinite(value) for value in ann.bbox):
        findings.warning("bbox_not_finite", path, f"has a NaN, infinite or null value: {ann.bbox}; the annotation is dropped",
                         "re-export the box; NaN usually comes from a division by a zero image size")
        return None
    x, y, w, h = ann.bbox
    if w <= 0 or h <= 0:
        findings.warning("bbox_degenerate", path, f"has zero or negative size: {_fmt(ann.bbox)}; the annotation is dropped",
                         "boxes are [x, y, width, height] with width and height > 0 (not [x1, y1, x2, y2])")
        return None
    if x >= 0 and y >= 0 and x + w <= image.width and y + h <= image.height:
        return x, y, w, h
    x0, y0 = min(max(x, 0.0), image.width), min(max(y, 0.0), image.height)
    x1, y1 = min(max(x + w, 0.0), image.width), min(max(y + h, 0.0), image.height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        findings.warning("bbox_outside_image", path,
                         f"{_fmt(ann.bbox)} lies entirely outside the {image.width}x{image.height} image; dropped",
                         "check the image size and that coordinates are in pixels")
        return None
    clipped = (x0, y0, x1 - x0, y1 - y0)
    overflow = max(-x, -y, x + w - image.width, y + h - image.height)
    if overflow <= SILENT_CLIP_PX:
        return clipped
    findings.warning("bbox_clipped", path,
                     f"{_fmt(ann.bbox)} reaches outside the {image.width}x{image.height} image; clipped to "
                     f"{_fmt(clipped)}", "nothing to do: the cleaned copy has the clipped box")
    return clipped


def _same(given: list, made: tuple | list, tolerance: float = 1e-3) -> bool:
    """Equal up to float noise: a value we recompute identically keeps its original bytes in the cleaned copy."""
    if tuple(given) == tuple(made):  # the common case, decided without a loop
        return True
    return len(given) == len(made) and all(
        g is not None and abs(g - m) <= tolerance * max(1.0, abs(m)) for g, m in zip(given, made))


def _shown(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def _whole(value: float | None) -> int | None:
    """Exporters write sizes as 640 or 640.0; anything else (640.5, absent) counts as missing."""
    return int(value) if value is not None and float(value).is_integer() else None


def _disagrees(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(ax1 - bx1), abs(ay1 - by1)) > BOX_MASK_DISAGREEMENT_PX


def _fmt(box: tuple[float, ...] | list[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in box) + "]"
