"""The logit component: the student's class scores follow the teacher's per-class probabilities (Hinton KD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcore.distill.losses.assignment import Assignment

# Teacher probabilities are clamped before the logit so a confident 0 or 1 gives a finite logit (|logit| <= 9.2).
PROBABILITY_EPS = 1e-4


def logit_distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                            temperature: float) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over rows (Hinton et al.).

    student_logits (n, C): the student's class logits at anchors assigned to teacher-scored objects; teacher_probs
    (n, C): the teacher's per-class probabilities there, turned into logits t = logit(clamp(p)). T^2 keeps the
    gradient scale independent of T. With one class a softmax is constant (the KL would always be 0), so the
    Bernoulli KL of sigmoid(t / T) against sigmoid(s / T) is used instead. n must be > 0 (the caller skips).
    """
    clamped = teacher_probs.float().clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    teacher, student = torch.logit(clamped) / temperature, student_logits.float() / temperature
    if teacher.shape[-1] == 1:
        teacher, student = torch.cat([teacher, -teacher], -1), torch.cat([student, -student], -1)
        teacher_log, student_log = F.logsigmoid(teacher), F.logsigmoid(student)  # log p, log (1 - p)
    else:
        teacher_log, student_log = F.log_softmax(teacher, dim=-1), F.log_softmax(student, dim=-1)
    return F.kl_div(student_log, teacher_log, reduction="batchmean", log_target=True) * temperature ** 2


def scored_anchors(assignment: Assignment, soft_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student class logits, teacher probabilities) at foreground anchors whose object has finite teacher scores."""
    a = assignment
    if soft_scores.shape[-1] != a.pred_scores.shape[-1]:
        raise ValueError(f"soft_scores have {soft_scores.shape[-1]} classes, the student {a.pred_scores.shape[-1]}")
    scored = torch.isfinite(soft_scores).all(-1) if len(soft_scores) else soft_scores.new_zeros(0, dtype=torch.bool)
    fg = a.fg_mask & scored[a.fg_object.clamp(min=0)] if len(scored) else torch.zeros_like(a.fg_mask)
    images, anchors = fg.nonzero(as_tuple=True)
    return a.pred_scores[images, anchors], soft_scores[a.fg_object[images, anchors]].to(a.pred_scores)
