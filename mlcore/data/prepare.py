"""`validate`: check a COCO dataset, repair what can be repaired, detect its mode, split it, write it all down.

Writes into the output folder: report.json (always), and when the data is usable annotations.cleaned.json,
.mode_config.json and, with a split, one COCO file per split. The input file is only ever read.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import msgspec
from pydantic import BaseModel, Field

from mlcore.data.active_configs import write_active_configs
from mlcore.data.category_checks import class_categories, resolve_repeated_names
from mlcore.data.coco_reader import MLCORE_KEY, RawCoco, read_coco
from mlcore.data.coco_schema import json_encoder
from mlcore.data.coco_writer import write_coco
from mlcore.data.export_layouts import MergedExport, merge_export, recognise_export
from mlcore.data.findings import Finding, Findings, Severity
from mlcore.data.coco_dataset import recorded_images_root
from mlcore.data.images import SAMPLE_NAMES, ImageCheck, ImageRoot, find_image_root, images_fingerprint
from mlcore.data.mode import (AnnotationMode, ModeEvidence, detect_mode, distillation_template, recommended_student,
                              recommended_teachers)
from mlcore.data.mode_config import DISTILLATION_LOSSES, MODE_CONFIG_NAME, DistillationSettings, ModeConfig
from mlcore.data.split import parse_ratios, stratified_split
from mlcore.data.split_groups import compile_group_by, duplicates_across_splits, image_groups
from mlcore.data.stats import DatasetStatistics, compute_statistics
from mlcore.data.validation import CrowdAsInstances, ValidatedCoco, validate_coco
from mlcore.errors import DatasetError
from mlcore.io import write_json_atomic

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
CLEANED_NAME = "annotations.cleaned.json"


class DatasetReport(BaseModel):
    """Everything `validate` found and wrote; saved as report.json."""

    dataset: str
    dataset_sha256: str
    images_root: str
    output_dir: str
    usable: bool
    annotation_mode: AnnotationMode | None = None
    num_classes: int = 0
    counts: dict[str, int] = Field(description="Findings per severity.")
    repairs: dict[str, int] = Field(default_factory=dict, description="Automatic repairs in the cleaned copy.")
    split_groups: str = Field("", description="What kept images together in one split (empty: each image alone).")
    export_layout: str = Field("", description="The labelling-tool export layout recognised when --data is a folder.")
    splits: dict[str, int] = Field(default_factory=dict, description="Images per split file written.")
    statistics: DatasetStatistics | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    findings: list[Finding]


def default_output_dir(annotation_file: Path) -> Path:
    return annotation_file.parent / f"{annotation_file.stem}_prepared"


def prepare_dataset(
    annotation_file: str | Path,
    *,
    images_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    split: str | None = None,
    seed: int = 42,
    image_check: ImageCheck = "header",
    keep_empty_classes: bool = False,
    mode: AnnotationMode | None = None,
    configs_dir: str | Path | None = None,
    overwrite_configs: bool = False,
    progress: bool = True,
    crowd_as_instances: CrowdAsInstances = "auto",
    group_by: str | None = None,
) -> DatasetReport:
    """Validate ANNOTATION_FILE and write the outputs; with `configs_dir`, also the active configs for its mode.

    `crowd_as_instances`: auto treats iscrowd=1 masks as objects when (nearly) every mask is one (CVAT's COCO 1.0).
    `group_by`: a regular expression on file names whose match (first group) keeps images in one split.
    """
    annotation_file = _absolute(annotation_file)
    output_dir = _absolute(output_dir) if output_dir else default_output_dir(annotation_file)
    ratios = parse_ratios(split) if split else None  # fail on a bad --split or --group-by before the long work
    group_pattern = compile_group_by(group_by)
    export = None
    if annotation_file.is_dir():
        export = _from_export_folder(annotation_file, output_dir, images_dir)
        annotation_file, images_dir = export.annotation_file, images_dir or export.images_root
    _clear_previous_outputs(output_dir, keep=annotation_file)
    raw = read_coco(annotation_file)
    root = _images_root(raw, images_dir)
    images_root = _absolute(root.root)
    log.info("validating %s (images in %s)", annotation_file, images_root)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = validate_coco(raw, root, image_check, progress=progress, spool_dir=output_dir,
                         crowd_as_instances=crowd_as_instances)
    if export is not None:
        _note_export(export, data.findings, ratios)
    try:
        return _finish(data, raw, annotation_file, output_dir, images_root, ratios, seed, keep_empty_classes, mode,
                       configs_dir, overwrite_configs, group_pattern, export)
    finally:
        data.spool.close()


def _from_export_folder(folder: Path, output_dir: Path, images_dir: str | Path | None) -> MergedExport:
    """A labelling tool's export folder: its parts merged into one file in OUTPUT_DIR (the export is only read)."""
    layout = recognise_export(folder)
    if len(layout.parts) == 1 and images_dir is None:  # validate the user's own file: findings point into it
        part = layout.parts[0]
        split_of = {}
        return MergedExport(part.annotation_file, part.images_dir, split_of, layout, [layout.describe()])
    output_dir.mkdir(parents=True, exist_ok=True)
    return merge_export(layout, output_dir)


def _note_export(export: MergedExport, findings: Findings, ratios: dict[str, float] | None) -> None:
    splits = export.layout.splits
    own = f"; its own splits ({', '.join(splits)}) are kept" if _has_own_splits(export) else ""
    findings.info("export_layout", str(export.layout.parts[0].annotation_file.parent),
                  export.notes[0] + own + (" (--split ignored)" if own and ratios else ""), "nothing to do")
    for note in export.notes[1:]:
        findings.info("export_merge", str(export.annotation_file), note, "nothing to do")


def _has_own_splits(export: MergedExport | None) -> bool:
    """An export with a train and another part is split already: its split is the user's, not ours to redo."""
    return export is not None and "train" in export.layout.splits and len(export.layout.splits) > 1


def _finish(data: ValidatedCoco, raw: RawCoco, annotation_file: Path, output_dir: Path, images_root: Path,
            ratios: dict[str, float] | None, seed: int, keep_empty_classes: bool, mode: AnnotationMode | None,
            configs_dir: str | Path | None, overwrite_configs: bool, group_by: re.Pattern[str] | None,
            export: MergedExport | None = None) -> DatasetReport:
    """Everything after the record checks: classes, mode, statistics, and the output files."""
    findings = data.findings

    resolve_repeated_names(data)
    class_categories_ = class_categories(data, keep_empty_classes)
    if not raw.has_annotations_key:
        findings.error("no_annotations", "annotations", "the file has no 'annotations' list: an image-info file "
                       "(like COCO's image_info_test2017.json) lists images but holds no labels",
                       "pass the instances file that has the annotations (e.g. instances_<split>.json)")
    elif not data.annotations and (not raw.annotations or not findings.has_errors):  # else the errors say why
        findings.error("no_annotations", "annotations", "no usable annotation remains",
                       "annotate the images (see the findings above for annotations that were dropped)")
    elif data.annotations and not class_categories_:
        findings.error("nothing_to_train", "annotations",
                       f"no category has a usable object: all {len(data.annotations)} kept annotations are crowd "
                       "regions (iscrowd=1), which train nothing",
                       "pass --crowd-as-instances yes if they are objects (CVAT's COCO 1.0 export marks masks so)")
    annotation_mode, evidence = _mode(data, mode)
    statistics = compute_statistics(data)
    if statistics.negative_images:
        findings.info("negative_images", "images",
                      f"{statistics.negative_images} image(s) have no annotation; kept as negatives (background "
                      "examples)", "nothing to do, unless they were meant to be annotated")
    usable = not findings.has_errors
    report = DatasetReport(
        dataset=str(annotation_file), dataset_sha256=raw.sha256, images_root=str(images_root),
        output_dir=str(output_dir), usable=usable, annotation_mode=annotation_mode if usable else None,
        num_classes=len(class_categories_), counts={}, statistics=statistics, findings=[],
        export_layout=export.layout.kind if export else "",
        repairs={"boxes_and_areas_from_masks": data.boxes_from_masks,
                 "annotation_ids_renumbered": data.renumbered_annotations,
                 "crowd_as_instances": data.crowd_as_instances},
    )
    if usable:
        cleaned = output_dir / CLEANED_NAME
        header = _header(raw, images_root)
        cleaned_sha256 = write_coco(cleaned, header=header, images=[i.out for i in data.images],
                   annotations=(data.spool.get(a.out) for a in data.annotations), categories=data.category_records)
        report.outputs["cleaned"] = str(cleaned)
        if ratios or _has_own_splits(export):
            report.splits, report.split_groups = _write_splits(data, header, ratios, seed, output_dir, findings,
                                                               report.outputs, group_by, export)
        mode_config = ModeConfig(
            annotation_mode=annotation_mode, num_classes=len(class_categories_),
            class_mapping={str(i): c.name for i, c in enumerate(class_categories_)},
            category_ids={str(i): c.id for i, c in enumerate(class_categories_)},
            recommended_teachers=recommended_teachers(annotation_mode),
            recommended_student=recommended_student(annotation_mode, len(class_categories_)),
            distillation_config=DistillationSettings(template=distillation_template(annotation_mode),
                                                     losses=DISTILLATION_LOSSES[annotation_mode]),
            dataset=str(cleaned), dataset_sha256=cleaned_sha256, source_dataset=str(annotation_file),
            source_sha256=raw.sha256,
            images_root=str(images_root),
            images_fingerprint=images_fingerprint(images_root, [image.file_name for image in data.images]),
            mode_evidence=evidence, statistics=statistics,
        )
        report.outputs["mode_config"] = str(mode_config.write(output_dir))
        if configs_dir is not None:
            splits = {name: report.outputs[name] for name in report.splits}
            written = write_active_configs(mode_config, splits, _absolute(configs_dir), overwrite=overwrite_configs)
            report.outputs.update({f"config:{path.parent.name}/{path.stem}": str(path) for path in written})
    findings.collapse_repeats()
    report.findings = findings.items
    report.counts = {severity.value: findings.count(severity) for severity in Severity}
    report_path = output_dir / REPORT_NAME
    report.outputs["report"] = str(report_path)
    write_json_atomic(report_path, report.model_dump(mode="json"))
    return report


def _absolute(path: str | Path) -> Path:
    """Absolute and normalized (no '..'): outputs are read later from other folders and machines."""
    return Path(os.path.abspath(path))


def _mode(data: ValidatedCoco, forced: AnnotationMode | None) -> tuple[AnnotationMode, ModeEvidence]:
    detected, evidence = detect_mode(data, data.findings)
    if not forced or forced == detected:
        return detected, evidence
    if forced != "detection_only" and evidence.with_mask == 0:
        data.findings.error("mode_needs_masks", "annotations", f"--mode {forced} needs masks and no annotation has one",
                            "add segmentations, or drop --mode to let the data decide")
    else:
        data.findings.info("mode_forced", "annotations", f"mode {forced} forced; the data alone says {detected}")
    return forced, evidence


def _images_root(raw: RawCoco, images_dir: str | Path | None) -> ImageRoot:
    if images_dir is not None and not Path(images_dir).is_dir():
        raise DatasetError("image folder not found", where=str(images_dir), fix="pass the folder holding the images")
    recorded = recorded_images_root(raw)  # a cleaned or split file validated again
    if images_dir is None and recorded is not None and recorded.is_dir():
        images_dir = recorded
    decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
    names = []
    step = max(1, len(raw.images) // SAMPLE_NAMES)
    for record in raw.images[::step][:SAMPLE_NAMES]:
        try:
            name = msgspec.json.decode(decoder.decode(record).get("file_name", b"null"))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(name, str):
            names.append(name)
    return find_image_root(raw.path, names, Path(images_dir) if images_dir is not None else None)


def _header(raw: RawCoco, images_root: Path) -> dict[str, msgspec.Raw]:
    """The input's top-level keys, plus where the images are: later commands read it and need no --images."""
    return {**raw.extra, MLCORE_KEY: msgspec.Raw(json_encoder.encode({"images_root": str(images_root)}))}


def _write_splits(data: ValidatedCoco, header: dict, ratios: dict[str, float], seed: int, output_dir: Path,
                  findings: Findings, outputs: dict[str, str], group_by: re.Pattern[str] | None,
                  export: MergedExport | None) -> tuple[dict[str, int], str]:
    labels: dict[int, set[int]] = {image.id: set() for image in data.images}
    for ann in data.annotations:
        if not ann.iscrowd:
            labels[ann.image_id].add(ann.category_id)
    if _has_own_splits(export):
        assignment, groups_source = _export_split(data, export, findings), "the export's own splits"
    else:
        assignment, groups_source = _grouped_split(data, labels, ratios, seed, findings, group_by)
    annotations_of: dict[int, list] = defaultdict(list)
    for ann in data.annotations:
        annotations_of[ann.image_id].append(ann.out)
    images_by_id = {image.id: image for image in data.images}
    names = {c.id: c.name for c in data.categories}
    short = []
    for category_id in sorted({c for v in labels.values() for c in v}):
        missing = [name for name, ids in assignment.items() if not any(category_id in labels[i] for i in ids)]
        if missing:
            short.append(f"'{names[category_id]}' (not in {', '.join(missing)})")
    if short:
        findings.warning("classes_missing_from_splits", "annotations",
                         f"{len(short)} class(es) have too few images to appear in every split: " + "; ".join(short),
                         "annotate more images of these classes, or evaluate them on the splits that have them")
    for name, image_ids in assignment.items():
        if not image_ids:
            findings.warning("split_empty", f"--split {name}",
                             f"split '{name}' got no image ({len(data.images)} images in all)",
                             "use more images or fewer splits; a split with no image cannot be evaluated")
    counts = {}
    for name, image_ids in assignment.items():
        path = output_dir / f"{name}.json"
        write_coco(path, header=header, images=[images_by_id[i].out for i in image_ids],
                   annotations=(data.spool.get(out) for i in image_ids for out in annotations_of[i]),
                   categories=data.category_records)
        outputs[name] = str(path)
        counts[name] = len(image_ids)
    return counts, groups_source


def _export_split(data: ValidatedCoco, export: MergedExport, findings: Findings) -> dict[str, list[int]]:
    assignment: dict[str, list[int]] = {name: [] for name in export.layout.splits}
    for image in data.images:
        name = export.split_of_image.get(image.id)
        if name is not None:
            assignment[name].append(image.id)
    _warn_duplicates(data, {i: name for name, ids in assignment.items() for i in ids}, findings)
    return assignment


def _warn_duplicates(data: ValidatedCoco, split_of: dict[int, str], findings: Findings) -> None:
    names = {image.id: image.file_name for image in data.images if image.id in split_of}
    duplicates = duplicates_across_splits(data.images_root, names, split_of)
    if duplicates:
        shown = "; ".join(f"'{a}' ({sa}) = '{b}' ({sb})" for a, sa, b, sb in duplicates[:5])
        findings.warning("duplicate_images_across_splits", "images",
                         f"{len(duplicates)} image file(s) have exactly the same content as a file in another split: "
                         f"{shown}", "remove the copies, or pass --group-by REGEX so that copies share a group")


def _grouped_split(data: ValidatedCoco, labels: dict[int, set[int]], ratios: dict[str, float], seed: int,
                   findings: Findings, group_by: re.Pattern[str] | None) -> tuple[dict[str, list[int]], str]:
    """Stratified split of whole groups (copies of one photo stay together), then a check for identical files."""
    groups = image_groups(((image.id, image.file_name, image.out) for image in data.images), group_by)
    if not groups.source:  # every image alone: the plain image split, the same as before groups existed
        assignment = stratified_split({k: sorted(v) for k, v in labels.items()}, ratios, seed)
        _warn_duplicates(data, {image_id: name for name, ids in assignment.items() for image_id in ids}, findings)
        return assignment, ""
    keys = sorted(set(groups.group_of.values()))
    index_of = {key: i for i, key in enumerate(keys)}
    members: dict[int, list[int]] = defaultdict(list)
    group_labels: dict[int, set[int]] = defaultdict(set)
    for image_id, key in groups.group_of.items():
        members[index_of[key]].append(image_id)
        group_labels[index_of[key]] |= labels[image_id]
    by_group = stratified_split({g: sorted(group_labels[g]) for g in members}, ratios, seed)
    assignment = {name: sorted(i for g in group_ids for i in members[g]) for name, group_ids in by_group.items()}
    if groups.source:
        findings.info("split_by_group", "--split", f"{len(data.images)} images in {groups.count} groups by "
                      f"{groups.source}; each group lies in one split", "nothing to do")
    _warn_duplicates(data, {image_id: name for name, ids in assignment.items() for image_id in ids}, findings)
    return assignment, groups.source


def _clear_previous_outputs(output_dir: Path, keep: Path) -> None:
    """Remove what an earlier run wrote here, so no stale split or mode config outlives a changed or broken dataset.

    Only files that run's report.json lists (and this folder's fixed names) are touched, never the input.
    """
    report_path = output_dir / REPORT_NAME
    names = {MODE_CONFIG_NAME, CLEANED_NAME, REPORT_NAME}
    previous: list[Path] = []
    if report_path.is_file():
        try:
            outputs = msgspec.json.decode(report_path.read_bytes()).get("outputs", {})
            previous = [Path(p) for key, p in outputs.items() if not key.startswith("config:")]
        except (msgspec.DecodeError, AttributeError):
            log.warning("ignoring unreadable %s from an earlier run", report_path)
    for path in [output_dir / name for name in names] + [p for p in previous if p.parent == output_dir]:
        if path.is_file() and path != keep:
            log.debug("removing %s from an earlier run", path)
            path.unlink()
