"""Geometry between the frames distillation works in: masks to boxes, mask resizing, teacher-to-student features.

The teachers and the student each see their own resized, padded copy of the original image; these helpers move
targets between those frames (via `PreprocessMeta`), so no loss ever compares pixels of two different frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcore.preprocess.meta import PreprocessMeta


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(n, H, W) masks -> (n, 4) float tight xyxy boxes in continuous pixel coordinates (x2 = last column + 1).

    Float masks count where > 0.5, others where non-zero; an empty mask gives [0, 0, 0, 0] (no box).
    """
    present = masks > 0.5 if masks.is_floating_point() else masks != 0
    boxes = torch.zeros(masks.shape[0], 4, dtype=torch.float32, device=masks.device)
    if not masks.shape[0]:
        return boxes
    height, width = masks.shape[-2:]
    columns, rows = present.any(1), present.any(2)
    x_index = torch.arange(width, device=masks.device)
    y_index = torch.arange(height, device=masks.device)
    boxes[:, 0] = torch.where(columns, x_index, width).amin(1).float()
    boxes[:, 1] = torch.where(rows, y_index, height).amin(1).float()
    boxes[:, 2] = torch.where(columns, x_index + 1, 0).amax(1).float()
    boxes[:, 3] = torch.where(rows, y_index + 1, 0).amax(1).float()
    return boxes * columns.any(1, keepdim=True)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, H, W) binary masks -> (n, h, w) float in [0, 1].

    Shrinking uses area averaging: each target cell gets the fraction of it the object covers, a soft target that
    keeps thin parts (nearest would drop or alias them) and is exact for BCE; growing uses bilinear.
    """
    masks = masks.float()
    if not masks.shape[0]:
        return masks.new_zeros((0, *size))
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.clone()
    shrinking = size[0] <= masks.shape[-2] and size[1] <= masks.shape[-1]
    mode = {"mode": "area"} if shrinking else {"mode": "bilinear", "align_corners": False}
    return F.interpolate(masks[:, None], size=tuple(size), **mode)[:, 0].clamp(0, 1)


def align_teacher_student_outputs(teacher_features: torch.Tensor, teacher_meta: PreprocessMeta,
                                   student_meta: PreprocessMeta, out_size: tuple[int, int]
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher features (Ct, h', w') over the teacher's input canvas -> (Ct, h, w) over the student's input canvas.

    Each output cell's centre in student input pixels goes back to the original image (the student's letterbox,
    unclipped), into the teacher's input frame (its resize and padding), and is sampled bilinearly there, the
    teacher's features spanning its whole input canvas (`teacher_meta.input_size`). valid (1, h, w) is True where that
    original point lies inside the original image (and the teacher canvas): False on the student's letterbox padding.
    """
    out_h, out_w = out_size
    student_h, student_w = student_meta.input_size
    device = teacher_features.device
    ys = (torch.arange(out_h, device=device, dtype=torch.float64) + 0.5) * (student_h / out_h)
    xs = (torch.arange(out_w, device=device, dtype=torch.float64) + 0.5) * (student_w / out_w)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([grid_x, grid_y], dim=-1)
    original = student_meta.points_from_model(centres, clip=False)
    teacher = teacher_meta.points_to_model(original)
    original_h, original_w = student_meta.original_size
    teacher_h, teacher_w = teacher_meta.input_size
    valid = ((original[..., 0] >= 0) & (original[..., 0] < original_w) & (original[..., 1] >= 0)
             & (original[..., 1] < original_h) & (teacher[..., 0] >= 0) & (teacher[..., 0] < teacher_w)
             & (teacher[..., 1] >= 0) & (teacher[..., 1] < teacher_h))
    # align_corners=False: -1 and 1 are the canvas edges, so cell k of w' sits at (k + 0.5) * teacher_w / w' pixels.
    normalised = torch.stack([teacher[..., 0] / teacher_w, teacher[..., 1] / teacher_h], dim=-1) * 2 - 1
    features = teacher_features.float()
    aligned = F.grid_sample(features[None], normalised[None].to(features.dtype), mode="bilinear",
                            padding_mode="border", align_corners=False)[0]
    return aligned, valid[None]
