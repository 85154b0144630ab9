"""Which annotation mode a dataset is in, and what that means for teachers, student and distillation.

The rule (also in docs/ANNOTATION_FORMATS.md), over non-crowd annotations:
- no annotation has a usable mask                       -> detection_only (also when every mask is exactly its
                                                          box: such masks carry no shape)
- masks present, and no annotation came with a bbox     -> segmentation_only (boxes are made from the masks)
- masks on at least MIN_MASK_FRACTION of annotations    -> detection_and_segmentation
- masks on fewer                                        -> detection_only; the few masks are ignored, with a warning
Crowd regions are ignore-regions for evaluation and never decide the mode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from mlcore.data.findings import Findings
from mlcore.data.validation import ValidatedCoco

AnnotationMode = Literal["detection_only", "segmentation_only", "detection_and_segmentation"]
MODES: tuple[str, ...] = AnnotationMode.__args__
MIN_MASK_FRACTION = 0.5


class ModeEvidence(BaseModel):
    annotations: int
    with_mask: int
    with_given_bbox: int

    @property
    def mask_fraction(self) -> float:
        return self.with_mask / self.annotations if self.annotations else 0.0


def detect_mode(data: ValidatedCoco, findings: Findings) -> tuple[AnnotationMode, ModeEvidence]:
    objects = [ann for ann in data.annotations if not ann.iscrowd]
    masked = sum(a.has_mask for a in objects)
    masks_are_boxes = masked > 0 and all(a.mask_is_box for a in objects if a.has_mask)
    evidence = ModeEvidence(annotations=len(objects), with_mask=0 if masks_are_boxes else masked,
                            with_given_bbox=sum(a.bbox_given or masks_are_boxes for a in objects))
    if masks_are_boxes:
        findings.info("masks_are_boxes", "annotations",
                      f"every one of the {masked} masks is exactly its box (a 4-corner rectangle, as VIA and box "
                      "tools write boxes); they carry no shape, so the dataset counts as boxes",
                      "nothing to do, unless they were meant to be outlines")
    if evidence.with_mask == 0:
        return "detection_only", evidence
    if evidence.with_given_bbox == 0:
        return "segmentation_only", evidence
    if evidence.mask_fraction >= MIN_MASK_FRACTION:
        if evidence.with_mask < evidence.annotations:
            findings.info("mixed_masks", "annotations",
                          f"{evidence.annotations - evidence.with_mask} of {evidence.annotations} annotations have "
                          "a box but no mask; they train detection only",
                          "add masks to them if segmentation quality on those objects matters")
        return "detection_and_segmentation", evidence
    findings.warning("masks_ignored", "annotations",
                     f"only {evidence.with_mask} of {evidence.annotations} annotations "
                     f"({evidence.mask_fraction:.0%}) have masks, under the {MIN_MASK_FRACTION:.0%} needed to train "
                     "segmentation; the dataset is treated as detection_only",
                     "add masks to more annotations, or pass --mode detection_and_segmentation to force it")
    return "detection_only", evidence


def recommended_teachers(mode: AnnotationMode) -> list[str]:
    """Grounding DINO finds and names objects from text; SAM turns boxes into masks. Train only what the mode needs."""
    return {"detection_only": ["grounding_dino"], "segmentation_only": ["sam"],
            "detection_and_segmentation": ["grounding_dino", "sam"]}[mode]


def recommended_student(mode: AnnotationMode, num_classes: int) -> str:
    """FastSAM is a single-class YOLOv8-seg: it fits class-agnostic segmentation only."""
    if mode == "detection_only":
        return "yolov8n"
    if mode == "segmentation_only" and num_classes == 1:
        return "fastsam"
    return "yolov8n-seg"


def distillation_template(mode: AnnotationMode) -> str:
    return {"detection_only": "kd_detection_only", "segmentation_only": "kd_segmentation_only",
            "detection_and_segmentation": "kd_both"}[mode]
