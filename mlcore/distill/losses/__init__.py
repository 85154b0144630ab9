"""Distillation losses, one component per file and per config section, behind `compute_distillation_loss`."""

from mlcore.distill.losses.assignment import Assignment, assign_targets, head_outputs
from mlcore.distill.losses.criterion import DistillationLoss, LossBreakdown, StudentHead, compute_distillation_loss
from mlcore.distill.losses.detection import detection_loss
from mlcore.distill.losses.feature import feature_distillation_loss
from mlcore.distill.losses.logit import logit_distillation_loss
from mlcore.distill.losses.segmentation import segmentation_loss

__all__ = [
    "Assignment",
    "DistillationLoss",
    "LossBreakdown",
    "StudentHead",
    "assign_targets",
    "compute_distillation_loss",
    "detection_loss",
    "feature_distillation_loss",
    "head_outputs",
    "logit_distillation_loss",
    "segmentation_loss",
]
