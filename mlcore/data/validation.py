"""Every COCO rule we check, record by record, producing findings and the cleaned records.

Images are checked first (sizes are needed to clip boxes), then categories, then annotations. Records that cannot
be used are dropped from the cleaned copy with a finding; records we can repair are repaired with a finding. A cause
shared by many records (an unknown category id, a wrong image folder) is one finding with a count, never hundreds.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from mlcore.data.coco_reader import RawCoco
from mlcore.data.coco_schema import CocoAnnotation, CocoCategory, replace_fields
from mlcore.data.findings import FindingGroup, Findings, Severity
from mlcore.data.image_checks import ImageRecord, check_images
from mlcore.data.images import ImageCheck, ImageRoot
from mlcore.data.lookalikes import keypoints_note, scores_note
from mlcore.data.masks import MaskGeometry, SegmentationProblem, clean_polygon_parts, polygon_geometry, rle_geometry
from mlcore.data.masks import segmentation_kind
from mlcore.data.record_decoding import RecordDecoder
from mlcore.data.spool import RecordSpool, Spooled

# A given box this far (in pixels, on any side) from its mask's tight box is worth a person's look.
BOX_MASK_DISAGREEMENT_PX = 2.0
# Exporters often round a box edge a hair past the border; clipping that is not worth a person's attention.
SILENT_CLIP_PX = 1.0
# CVAT's "COCO 1.0" export marks every mask iscrowd=1: when this share of masked annotations is crowd (and crowd
# annotations are most of the file), they are objects.
CROWD_CONVENTION_SHARE = 0.9
CrowdAsInstances = Literal["auto", "yes", "no"]

__all__ = ["AnnotationRecord", "ImageRecord", "ValidatedCoco", "validate_coco"]


@dataclass(slots=True)
class AnnotationRecord:
    image_id: int
    category_id: int
    iscrowd: bool
    area: float
    has_mask: bool
    bbox_given: bool
    out: Spooled | msgspec.Raw  # repaired records live in the spool, unchanged ones stay slices of the input
    mask_is_box: bool = False  # the mask is a rectangle equal to the box: no shape information


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
    crowd_as_instances: int = 0
    category_positions: dict[int, int] = field(default_factory=dict)  # category id -> index in the file
    # Annotations of a known category that were dropped, by category id and the finding code that dropped them.
    dropped: Counter[tuple[int, str]] = field(default_factory=Counter)
    images_without_usable_annotations: int = 0  # annotated in the file, every annotation dropped; left out


def validate_coco(raw: RawCoco, images_root: Path | ImageRoot, image_check: ImageCheck, progress: bool = True,
                  spool_dir: Path | None = None, crowd_as_instances: CrowdAsInstances = "auto") -> ValidatedCoco:
    """Check every record; the caller closes `result.spool` (a temp file in `spool_dir`) when done writing."""
    root = images_root if isinstance(images_root, ImageRoot) else ImageRoot(images_root, (images_root,), 1, 1)
    findings = Findings()
    if raw.non_standard_numbers:
        findings.warning(
            "non_standard_json", str(raw.path),
            "the file has NaN or Infinity literals, which JSON does not allow; they were read as missing values",
            "fix the tool that exported it (Python: json.dump(..., allow_nan=False) shows where)",
        )
    for code, note in (("keypoints_ignored", keypoints_note(raw.categories, raw.annotations)),
                       ("scores_in_ground_truth", scores_note(raw.annotations))):
        if note:
            findings.info(code, "annotations", note, "nothing to do, unless this is the wrong file")
    images = check_images(raw, root, image_check, findings, progress)
    categories, category_records, positions = _decode_categories(raw, findings)
    result = ValidatedCoco(images=images.usable, categories=categories, category_records=category_records,
                           annotations=[], findings=findings, images_root=root.root, category_positions=positions,
                           spool=RecordSpool(spool_dir))
    _validate_annotations(raw, result, images.listed_ids, images.rejected)
    _crowd_convention(result, crowd_as_instances)
    return result


def _decode_categories(
    raw: RawCoco, findings: Findings
) -> tuple[list[CocoCategory], list[msgspec.Raw], dict[int, int]]:
    """Categories with unique ids. Repeated names are resolved later, once it is known which ids annotations use."""
    categories: list[CocoCategory] = []
    records: list[msgspec.Raw] = []
    ids: dict[int, int] = {}
    decoder = RecordDecoder(CocoCategory, "categories", findings)
    for index, category, record in decoder.records(raw.categories):
        if category.id in ids:
            findings.error("duplicate_category_id", f"categories[{index}].id",
                           f"category id {category.id} is already used by categories[{ids[category.id]}]",
                           "give every category a unique id")
            continue
        ids[category.id] = index
        categories.append(category)
        records.append(record)
    decoder.finish()
    if not raw.categories:
        findings.error("no_categories", "categories", "the file lists no categories",
                       "add a 'categories' entry per class: {\"id\": 1, \"name\": \"car\"} (VGG Image Annotator "
                       "writes none unless each region has a class attribute: add one and export again)")
    return categories, records, ids


def _validate_annotations(raw: RawCoco, result: ValidatedCoco, listed_image_ids: set[int],
                          rejected_images: dict[int, str]) -> None:
    findings = result.findings
    images = {image.id: image for image in result.images}
    category_ids = {category.id for category in result.categories}
    unknown_images = FindingGroup(Severity.ERROR, "unknown_image_id", "annotations point at image ids no image has",
                                  "point image_id at an existing image or add the image", "annotations")
    unknown_categories = FindingGroup(Severity.ERROR, "unknown_category_id",
                                      "annotations use category ids no category has",
                                      "use an id from 'categories' or add the missing category", "annotations")
    seen_ids: set[int] = set()
    annotated_images: set[int] = set()
    duplicates: list[int] = []  # positions in result.annotations whose id must be renumbered
    max_id = 0
    segmentation_decoder = msgspec.json.Decoder()
    decoder = RecordDecoder(CocoAnnotation, "annotations", findings)
    for index, ann, record in decoder.records(raw.annotations):
        where = f"annotations[{index}]"
        annotated_images.add(ann.image_id)
        image = images.get(ann.image_id)
        known_category = ann.category_id in category_ids
        if image is None:
            if ann.image_id not in listed_image_ids:
                unknown_images.add(f"{where}.image_id", f"no image has id {ann.image_id}")
            elif known_category:  # the image itself was rejected: its finding already says why
                result.dropped[(ann.category_id, rejected_images.get(ann.image_id, "image_rejected"))] += 1
            continue
        if not known_category:
            unknown_categories.add(f"{where}.category_id", f"no category has id {ann.category_id}")
            continue
        codes_before = len(findings)
        kept = _check_annotation(ann, record, index, image, result, segmentation_decoder)
        if kept is None:
            reason = findings.items[-1].code if len(findings) > codes_before else "annotation_empty"
            result.dropped[(ann.category_id, reason)] += 1
            continue
        if ann.id in seen_ids:
            duplicates.append(len(result.annotations))
            findings.warning("duplicate_annotation_id", f"{where}.id",
                             f"annotation id {ann.id} is used more than once; this one gets a new id",
                             "give every annotation a unique id")
        seen_ids.add(ann.id)
        max_id = max(max_id, ann.id)
        result.annotations.append(kept)
    decoder.finish()
    unknown_images.emit(findings)
    _emit_unknown_categories(unknown_categories, findings)
    for offset, position in enumerate(duplicates, start=1):
        kept = result.annotations[position]
        kept.out = result.spool.put(replace_fields(result.spool.get(kept.out), id=max_id + offset))
    result.renumbered_annotations = len(duplicates)
    _leave_out_images_that_lost_all_annotations(result, annotated_images)


def _emit_unknown_categories(group: FindingGroup, findings: Findings) -> None:
    """Name each missing id once with its count: `7 (34 annotations)` says more than 34 lines."""
    counts = Counter(detail.rsplit(" ", 1)[-1] for _, detail in group.places)
    if len(group) > 1:
        group.summary += "; missing ids: " + ", ".join(f"{cid} ({n} annotations)" for cid, n in counts.most_common())
    group.emit(findings)


def _leave_out_images_that_lost_all_annotations(result: ValidatedCoco, annotated: set[int]) -> None:
    """An image whose objects were all dropped is not a negative: used as background it would teach the model that
    its objects are background. It is left out, with one finding."""
    kept = {ann.image_id for ann in result.annotations}
    lost = [image for image in result.images if image.id in annotated and image.id not in kept]
    if not lost:
        return
    result.images = [image for image in result.images if image.id not in {image.id for image in lost}]
    result.images_without_usable_annotations = len(lost)
    names = ", ".join(f"'{image.file_name}'" for image in lost[:5]) + (" ..." if len(lost) > 5 else "")
    result.findings.warning(
        "image_lost_all_annotations", "images" if len(lost) > 1 else f"images[{lost[0].index}]",
        f"{len(lost)} image(s) had annotations but every one was dropped ({names}); left out of the cleaned copy "
        "rather than kept as negatives (their unlabelled objects would train as background)",
        "fix the annotations the other findings name, then validate again")


def _crowd_convention(result: ValidatedCoco, option: CrowdAsInstances) -> None:
    """CVAT's "COCO 1.0" export writes every mask as iscrowd=1 RLE: read that way, nothing would train."""
    masked = [ann for ann in result.annotations if ann.has_mask]
    crowd = [ann for ann in result.annotations if ann.iscrowd]
    if not crowd:
        return
    crowd_masked = sum(ann.iscrowd for ann in masked)
    # COCO's own crowd regions are a few percent of its annotations; CVAT's convention makes them nearly all.
    convention = (bool(masked) and crowd_masked / len(masked) >= CROWD_CONVENTION_SHARE
                  and len(crowd) / len(result.annotations) > 0.5)
    share = f"{crowd_masked} of {len(masked)} masked annotations are iscrowd=1"
    if option == "no" or (option == "auto" and not convention):
        if convention:
            result.findings.info("crowd_kept", "annotations", f"{share}; kept as crowd regions (--crowd-as-instances "
                                 "no), which train nothing", "drop --crowd-as-instances no to train them as objects")
        return
    for ann in crowd:
        ann.iscrowd = False
        ann.out = result.spool.put(replace_fields(result.spool.get(ann.out), iscrowd=0))
    result.crowd_as_instances = len(crowd)
    why = (f"{share}: the convention of CVAT's 'COCO 1.0' export, which marks every mask that way"
           if option == "auto" else "--crowd-as-instances yes")
    result.findings.warning("crowd_as_instances", "annotations",
                            f"{why}; all {len(crowd)} crowd annotations are treated as object instances (iscrowd 0 in "
                            "the cleaned copy)", "pass --crowd-as-instances no if they really are crowd regions")


def _check_annotation(ann: CocoAnnotation, record: msgspec.Raw | bytes, index: int, image: ImageRecord,
                      result: ValidatedCoco, segmentation_decoder: msgspec.json.Decoder) -> AnnotationRecord | None:
    """The annotation's kept record (box and area from its mask when it has one), or None when it is dropped."""
    findings, where = result.findings, f"annotations[{index}]"
    findings_before = len(findings)
    geometry, segmentation = _mask_geometry(ann, segmentation_decoder, image, where, findings)
    if geometry is not None:
        new_bbox, area = geometry.bbox, geometry.area
        _compare_given_box(ann, image, where, geometry, findings)
        result.boxes_from_masks += 1
    else:
        bbox = _given_box(ann, image, where, findings)
        if bbox is None:
            if len(findings) == findings_before:  # otherwise a box or mask finding already says why
                findings.warning("annotation_empty", where, "has neither a bbox nor a segmentation; dropped",
                                 "give it a bbox [x, y, width, height] or a segmentation")
            return None
        new_bbox = bbox
        given_area_usable = ann.area is not None and math.isfinite(ann.area) and ann.area > 0
        area = ann.area if given_area_usable and bbox == tuple(ann.bbox) else bbox[2] * bbox[3]
    fields: dict[str, Any] = {}
    if ann.bbox is None or not _same(ann.bbox, new_bbox) or ann.area is None or not _same([ann.area], [area]):
        fields.update(bbox=[round(v, 3) for v in new_bbox], area=round(area, 3))
    if segmentation is not KEEP:
        fields["segmentation"] = segmentation
    out = result.spool.put(replace_fields(record, **fields)) if fields else (
        result.spool.put(record) if isinstance(record, bytes) else record)
    return AnnotationRecord(
        image_id=ann.image_id, category_id=ann.category_id, iscrowd=bool(ann.iscrowd), area=area,
        has_mask=geometry is not None, bbox_given=ann.bbox is not None, out=out,
        mask_is_box=geometry is not None and geometry.is_box,
    )


def _compare_given_box(ann: CocoAnnotation, image: ImageRecord, where: str, geometry: MaskGeometry,
                       findings: Findings) -> None:
    """The mask's tight box replaces the given one; say so when the file's box was unusable or disagrees (quoting
    the file's own numbers, not a clipped copy)."""
    if ann.bbox is None:
        return
    bbox = _given_box(ann, image, where, _DISCARD)  # the common case: no Findings object per annotation
    if bbox is None:
        problems = Findings()
        _given_box(ann, image, where, problems)
        reason = problems.items[0].message.split("; ")[0] if problems.items else "unusable"
        findings.warning("bbox_replaced_by_mask", f"{where}.bbox",
                         f"the file's box is unusable ({reason}); its mask's tight box {_fmt(geometry.bbox)} is used",
                         "nothing to do: the cleaned copy has the mask's box (check the exporter)")
    elif _disagrees(bbox, geometry.bbox):
        findings.warning("bbox_mask_mismatch", f"{where}.bbox",
                         f"bbox {_fmt(ann.bbox)} differs from its mask's tight box {_fmt(geometry.bbox)} by more "
                         f"than {BOX_MASK_DISAGREEMENT_PX:g} px; the mask's box is used",
                         "check this annotation: box and mask should outline the same object")


KEEP = object()  # the segmentation goes to the cleaned copy as it was


class _Discard:
    """A findings sink that keeps nothing: for checks whose outcome matters but whose messages do not."""

    def warning(self, *_args: object) -> None:
        pass


_DISCARD: Any = _Discard()
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
    if geometry.overflow > SILENT_CLIP_PX and geometry.area > 0:
        findings.warning("polygon_clipped", path,
                         f"the polygon reaches {geometry.overflow:g} px outside the {image.width}x{image.height} "
                         f"image; its box and area are those of the part inside: {_fmt(geometry.bbox)}",
                         "nothing to do: the cleaned copy has the clipped box and area (the polygon is kept as is)")
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


def _disagrees(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(ax1 - bx1), abs(ay1 - by1)) > BOX_MASK_DISAGREEMENT_PX


def _fmt(box: tuple[float, ...] | list[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in box) + "]"
