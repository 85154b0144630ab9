"""Comparing two engines' detections: same objects, boxes within a pixel, masks nearly the same."""

from __future__ import annotations

import torch

from mlcore.inference import Detections


def assert_same_detections(got: Detections, want: Detections, *, box_px: float = 1.0, score: float = 1e-3,
                           mask_iou: float = 0.9) -> None:
    """Each wanted detection has a match (same class, boxes within box_px, close score); masks overlap by mask_iou."""
    assert got.image_size == want.image_size
    assert len(got) == len(want), (len(got), len(want))
    unused = set(range(len(got)))
    for index in range(len(want)):
        candidates = [other for other in unused
                      if int(got.class_ids[other]) == int(want.class_ids[index])
                      and float((got.boxes[other] - want.boxes[index]).abs().max()) <= box_px
                      and abs(float(got.scores[other] - want.scores[index])) <= score]
        assert candidates, f"no match for detection {index}: {want.boxes[index].tolist()} class {want.class_ids[index]}"
        match = min(candidates, key=lambda other: float((got.boxes[other] - want.boxes[index]).abs().sum()))
        unused.discard(match)
        if want.masks is not None:
            assert got.masks is not None
            overlap = (got.masks[match] & want.masks[index]).sum().item()
            union = (got.masks[match] | want.masks[index]).sum().item()
            assert union == 0 or overlap / union >= mask_iou, overlap / union


def assert_identical(got: list[Detections], want: list[Detections]) -> None:
    assert len(got) == len(want)
    for first, second in zip(got, want):
        for name in ("boxes", "scores", "class_ids", "masks"):
            a, b = getattr(first, name), getattr(second, name)
            assert (a is None and b is None) or torch.equal(a, b), name
