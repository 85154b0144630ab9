"""Planned transforms -> one albumentations 2.x `Compose` that keeps COCO boxes, masks and labels in sync.

Boxes travel as COCO [x, y, w, h] with clipping on; an object left with less than MIN_VISIBILITY of its area in the
frame is dropped. The label field carried through is the object's index, so the caller knows exactly which objects
survived and can keep masks and labels with them (pipeline.py).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks for updates at import, offline here

import albumentations as A  # noqa: E402

from mlcore.augmentation.rules import TRANSFORM_DEFAULTS  # noqa: E402
from mlcore.augmentation.translator import PipelineInfo, PlannedTransform  # noqa: E402

INDEX_FIELD = "object_index"
MIN_VISIBILITY = 0.25  # an object with under a quarter of its box left in the frame is no longer a fair example
MIN_SIZE_PX = 1.0  # boxes thinner than a pixel after clipping are not objects


def bbox_params(label_fields: list[str] | None = None) -> A.BboxParams:
    """COCO boxes, clipped to the frame; invalid input boxes are filtered, not fatal."""
    return A.BboxParams(
        format="coco", label_fields=label_fields or [INDEX_FIELD], min_visibility=MIN_VISIBILITY,
        min_width=MIN_SIZE_PX, min_height=MIN_SIZE_PX, clip=True, filter_invalid_bboxes=True,
    )


def build_transform(planned: PlannedTransform) -> A.BasicTransform:
    """One albumentations transform; strict=True makes an unknown (e.g. 1.x-style) argument an error."""
    cls = getattr(A, planned.name, None)
    if cls is None:
        raise ValueError(f"albumentations {A.__version__} has no transform {planned.name!r}")
    params: dict[str, Any] = {**TRANSFORM_DEFAULTS.get(planned.name, {}), **planned.params}
    return cls(**params, p=planned.p, strict=True)


def build_transforms(info: PipelineInfo) -> list[A.BasicTransform]:
    return [build_transform(planned) for planned in info.transforms]


def build_compose(info: PipelineInfo, seed: int | None = None,
                  label_fields: list[str] | None = None) -> A.Compose:
    """The Compose for a plan; same plan and seed give the same sequence of outputs."""
    return A.Compose(build_transforms(info), bbox_params=bbox_params(label_fields), seed=seed)
