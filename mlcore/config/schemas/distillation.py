"""Knowledge-distillation configs: how teacher outputs and ground truth combine into the student's training signal.

Three kinds share one shape and differ in defaults and in which losses they allow: `kd_detection_only` (boxes),
`kd_segmentation_only` (masks) and `kd_both`. Refusing e.g. a segmentation loss in a detection-only config catches a
config copied from the wrong template before hours of training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlcore.config.schemas.common import ConfigModel, DatasetSection, OptionalPath


class KdDataSection(DatasetSection):
    unlabeled_images_dir: OptionalPath = Field(
        default=None,
        description="Extra images without annotations, labelled by the teachers only (placeholder "
        "{{unlabeled_images}}). null: use only the annotated images.",
    )


class DetectionLoss(ConfigModel):
    enabled: bool = Field(default=True, description="Train the student's boxes/classes on teacher boxes.")
    weight: float = Field(default=1.0, ge=0.0, description="Weight of this component in the total loss.")
    giou_weight: float = Field(
        default=7.5, ge=0.0, description="Sub-weight of the GIoU box-overlap term (7.5: ultralytics' box gain)."
    )
    ce_weight: float = Field(
        default=0.5, ge=0.0, description="Sub-weight of the classification (cross-entropy) term (0.5: its cls gain)."
    )


class SegmentationLoss(ConfigModel):
    enabled: bool = Field(default=True, description="Train the student's masks on teacher (SAM) masks.")
    weight: float = Field(default=1.0, ge=0.0, description="Weight of this component in the total loss.")
    bce_weight: float = Field(default=1.0, ge=0.0, description="Sub-weight of per-pixel binary cross-entropy.")
    dice_weight: float = Field(default=1.0, ge=0.0, description="Sub-weight of the dice (overlap) term.")


class FeatureDistillationLoss(ConfigModel):
    enabled: bool = Field(
        default=False, description="Match student neck features to teacher features through 1x1 adapters."
    )
    weight: float = Field(default=1.0, ge=0.0, description="Weight of this component in the total loss.")
    adapter_channels: int = Field(
        default=256, ge=1, description="Channels the adapters project student features to (teacher d_model: 256)."
    )
    layers: list[int] = Field(
        default_factory=lambda: [15, 18, 21],
        min_length=1,
        description="Student layer indices whose outputs are matched; 15/18/21 are YOLOv8's P3/P4/P5 neck outputs.",
    )


class LogitDistillationLoss(ConfigModel):
    enabled: bool = Field(default=True, description="Match the student's class scores to the teacher's soft scores.")
    weight: float = Field(default=1.0, ge=0.0, description="Weight of this component in the total loss.")
    temperature: float = Field(
        default=4.0, gt=0.0, description="Softening temperature; 1-8, higher passes more 'dark knowledge'."
    )


class SegmentationLossOff(SegmentationLoss):
    """Same knobs, off by default: the detection-only kind has no masks to learn."""

    enabled: bool = Field(default=False, description="Must stay false in kd_detection_only (boxes only).")

    @field_validator("enabled")
    @classmethod
    def _stays_off(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError(
                "kd_detection_only trains boxes only, so segmentation_loss cannot be enabled; set it to false, or "
                "start from kd_both.template.yaml (boxes + masks) or kd_segmentation_only.template.yaml (masks)"
            )
        return enabled


class DetectionLossOff(DetectionLoss):
    """Same knobs, off by default: the segmentation-only kind distils masks only."""

    enabled: bool = Field(default=False, description="Must stay false in kd_segmentation_only (masks only).")

    @field_validator("enabled")
    @classmethod
    def _stays_off(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError(
                "kd_segmentation_only distils masks only, so detection_loss cannot be enabled; set it to false, "
                "or start from kd_both.template.yaml (boxes + masks)"
            )
        return enabled


class LogitDistillationLossOff(LogitDistillationLoss):
    """Same knobs, off: the segmentation-only teacher (SAM) has no class scores to distil."""

    enabled: bool = Field(default=False, description="Must stay false in kd_segmentation_only (SAM has no classes).")

    @field_validator("enabled")
    @classmethod
    def _stays_off(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError(
                "kd_segmentation_only's teacher is SAM, which gives no class scores, so logit_distillation_loss "
                "cannot be enabled; set it to false, or use kd_both.template.yaml (Grounding DINO gives class scores)"
            )
        return enabled


class KdLosses(ConfigModel):
    detection_loss: DetectionLoss = Field(default_factory=DetectionLoss, description="Box/class supervision.")
    segmentation_loss: SegmentationLoss = Field(default_factory=SegmentationLoss, description="Mask supervision.")
    feature_distillation_loss: FeatureDistillationLoss = Field(
        default_factory=FeatureDistillationLoss, description="Intermediate-feature matching."
    )
    logit_distillation_loss: LogitDistillationLoss = Field(
        default_factory=LogitDistillationLoss, description="Soft class-score matching."
    )

    @model_validator(mode="after")
    def _something_enabled(self) -> KdLosses:
        if not any(component.enabled for component in dict(self).values()):
            raise ValueError("every loss component is disabled: enable at least one")
        return self


class GroundTruthCombination(ConfigModel):
    rule: Literal["prefer_ground_truth", "teacher_only", "union"] = Field(
        default="prefer_ground_truth",
        description="prefer_ground_truth: annotated images use their labels, teachers label the rest; "
        "teacher_only: ignore annotations; union: annotations plus teacher boxes that overlap none of them.",
    )
    union_iou_threshold: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="For union: a teacher box whose IoU with any annotation reaches this is a duplicate, dropped.",
    )


class KdConfigBase(ConfigModel):
    """Fields common to the three distillation kinds."""

    kind: str = Field(description="Config type; each kind narrows it to its own name.")
    data: KdDataSection = Field(default_factory=KdDataSection, description="Annotated and unlabeled images.")
    teacher_cache_dir: OptionalPath = Field(
        default=None,
        description="Where teacher predictions are stored so each image is labelled once; "
        "null: <run dir>/teacher_cache.",
    )
    teacher_score_threshold: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Teacher detections below this score are not used as pseudo-labels."
    )
    teacher_precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description="Dtype of the teachers' forwards while labelling. auto: bf16 on GPUs with native bf16 (else "
        "fp16) and on CPUs with native bf16 (AVX512-BF16/AMX, about 2x faster), else fp32.",
    )
    ground_truth: GroundTruthCombination = Field(
        default_factory=GroundTruthCombination, description="How annotations and teacher labels combine."
    )


class DetectionOnlyLosses(KdLosses):
    segmentation_loss: SegmentationLossOff = Field(
        default_factory=SegmentationLossOff, description="Mask supervision: not available in this kind."
    )


class SegmentationOnlyLosses(KdLosses):
    detection_loss: DetectionLossOff = Field(
        default_factory=DetectionLossOff, description="Box/class supervision: not available in this kind."
    )
    logit_distillation_loss: LogitDistillationLossOff = Field(
        default_factory=LogitDistillationLossOff, description="Class-score matching: SAM has no class scores."
    )

    @field_validator("segmentation_loss")
    @classmethod
    def _masks_on(cls, loss: SegmentationLoss) -> SegmentationLoss:
        if not loss.enabled:
            raise ValueError("kd_segmentation_only needs segmentation_loss.enabled: true (it is the point of it)")
        return loss


class KdDetectionOnlyConfig(KdConfigBase):
    """Distil the Grounding DINO teacher into a YOLOv8 detector."""

    kind: Literal["kd_detection_only"] = Field(default="kd_detection_only", description="Config type.")
    losses: DetectionOnlyLosses = Field(default_factory=DetectionOnlyLosses, description="Loss components.")


class KdSegmentationOnlyConfig(KdConfigBase):
    """Distil the SAM teacher's masks into a YOLOv8-seg / FastSAM student."""

    kind: Literal["kd_segmentation_only"] = Field(default="kd_segmentation_only", description="Config type.")
    losses: SegmentationOnlyLosses = Field(default_factory=SegmentationOnlyLosses, description="Loss components.")


class KdBothConfig(KdConfigBase):
    """Distil both teachers (boxes from Grounding DINO, masks from SAM) into a YOLOv8-seg student."""

    kind: Literal["kd_both"] = Field(default="kd_both", description="Config type.")
    losses: KdLosses = Field(default_factory=KdLosses, description="Loss components.")
