"""`validate`: check a COCO dataset, repair what can be repaired, detect its mode, split it, write it all down.

Writes into the output folder: report.json (always), and when the data is usable annotations.cleaned.json,
.mode_config.json and, with a split, one COCO file per split. The input file is only ever read.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import msgspec
from pydantic import BaseModel, Field

from mlcore.data.coco_reader import RawCoco, read_coco
from mlcore.data.coco_writer import write_coco
from mlcore.data.findings import Finding, Findings, Severity
from mlcore.data.images import ImageCheck, choose_image_root, images_fingerprint
from mlcore.data.mode import (AnnotationMode, ModeEvidence, detect_mode, distillation_template, recommended_student,
                              recommended_teachers)
from mlcore.data.mode_config import DISTILLATION_LOSSES, MODE_CONFIG_NAME, DistillationSettings, ModeConfig
from mlcore.data.split import parse_ratios, stratified_split
from mlcore.data.stats import DatasetStatistics, compute_statistics
from mlcore.data.validation import ValidatedCoco, validate_coco
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
) -> DatasetReport:
    """Validate ANNOTATION_FILE and write the outputs; with `configs_dir`, also the active configs for its mode."""
    annotation_file = _absolute(annotation_file)
    output_dir = _absolute(output_dir) if output_dir else default_output_dir(annotation_file)
    ratios = parse_ratios(split) if split else None  # fail on a bad --split before the long work
    _clear_previous_outputs(output_dir, keep=annotation_file)
    raw = read_coco(annotation_file)
    images_root = _absolute(_images_root(raw, images_dir))
    log.info("validating %s (images in %s)", annotation_file, images_root)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = validate_coco(raw, images_root, image_check, progress=progress, spool_dir=output_dir)
    try:
        return _finish(data, raw, annotation_file, output_dir, images_root, ratios, seed, keep_empty_classes, mode,
                       configs_dir, overwrite_configs)
    finally:
        data.spool.close()


def _finish(data: ValidatedCoco, raw: RawCoco, annotation_file: Path, output_dir: Path, images_root: Path,
            ratios: dict[str, float] | None, seed: int, keep_empty_classes: bool, mode: AnnotationMode | None,
            configs_dir: str | Path | None, overwrite_configs: bool) -> DatasetReport:
    """Everything after the record checks: classes, mode, statistics, and the output files."""
    findings = data.findings

    class_categories = _class_categories(data, keep_empty_classes)
    if not data.annotations:
        findings.error("no_annotations", "annotations", "no usable annotation remains",
                       "annotate the images (see the findings above for annotations that were dropped)")
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
        num_classes=len(class_categories), counts={}, statistics=statistics, findings=[],
        repairs={"boxes_and_areas_from_masks": data.boxes_from_masks,
                 "annotation_ids_renumbered": data.renumbered_annotations},
    )
    if usable:
        cleaned = output_dir / CLEANED_NAME
        cleaned_sha256 = write_coco(cleaned, header=raw.extra, images=[i.out for i in data.images],
                   annotations=(data.spool.get(a.out) for a in data.annotations), categories=data.category_records)
        report.outputs["cleaned"] = str(cleaned)
        if ratios:
            report.splits = _write_splits(data, raw.extra, ratios, seed, output_dir, findings, report.outputs)
        mode_config = ModeConfig(
            annotation_mode=annotation_mode, num_classes=len(class_categories),
            class_mapping={str(i): c.name for i, c in enumerate(class_categories)},
            category_ids={str(i): c.id for i, c in enumerate(class_categories)},
            recommended_teachers=recommended_teachers(annotation_mode),
            recommended_student=recommended_student(annotation_mode, len(class_categories)),
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
            from mlcore.config.active import write_active_configs  # config builds on data, not the reverse

            splits = {name: report.outputs[name] for name in report.splits}
            written = write_active_configs(mode_config, splits, _absolute(configs_dir), overwrite=overwrite_configs)
            report.outputs.update({f"config:{path.parent.name}/{path.stem}": str(path) for path in written})
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


def _images_root(raw: RawCoco, images_dir: str | Path | None) -> Path:
    if images_dir is not None:
        root = Path(images_dir)
        if not root.is_dir():
            raise DatasetError("image folder not found", where=str(root), fix="pass the folder holding the images")
        return root
    decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
    names = []
    for record in raw.images[:50]:
        try:
            name = msgspec.json.decode(decoder.decode(record).get("file_name", b"null"))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(name, str):
            names.append(name)
    return choose_image_root(raw.path, names)


def _class_categories(data: ValidatedCoco, keep_empty: bool) -> list:
    """Categories that become classes, in category-id order; unused ones are reported and, by default, left out."""
    used = {ann.category_id for ann in data.annotations if not ann.iscrowd}
    crowd_only = {ann.category_id for ann in data.annotations if ann.iscrowd} - used
    classes = []
    for category in sorted(data.categories, key=lambda c: c.id):
        if category.id in used or keep_empty:
            classes.append(category)
        if category.id in used:
            continue
        what = "only crowd regions (iscrowd=1), which train nothing" if category.id in crowd_only \
            else "no annotation"
        data.findings.add(
            Severity.INFO if keep_empty else Severity.WARNING, "category_unused",
            f"categories[{data.category_positions[category.id]}]",
            f"category '{category.name}' (id {category.id}) has {what}"
            + ("; kept as a class (--keep-empty-classes)" if keep_empty else "; left out of the class mapping"),
            "annotate objects of it, or remove it" if keep_empty
            else "annotate objects of it, remove it, or pass --keep-empty-classes to keep it as a class",
        )
    return classes


def _write_splits(data: ValidatedCoco, header: dict, ratios: dict[str, float], seed: int, output_dir: Path,
                  findings: Findings, outputs: dict[str, str]) -> dict[str, int]:
    labels: dict[int, set[int]] = {image.id: set() for image in data.images}
    for ann in data.annotations:
        if not ann.iscrowd:
            labels[ann.image_id].add(ann.category_id)
    assignment = stratified_split({k: sorted(v) for k, v in labels.items()}, ratios, seed)
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
    return counts


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
