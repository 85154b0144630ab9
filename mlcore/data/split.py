"""Seeded, multi-label stratified splitting of images into train / val / test.

Iterative stratification (Sechidis, Tsoumakas and Vlahavas, ECML 2011): the rarest class is placed first, each of
its images going to the split that still wants that class most, so rare classes reach every split that can hold
them. Images without annotations (negatives) are spread by the ratios like any other image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from mlcore.errors import DatasetError


SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")
RESERVED_NAMES = {"report", "cleaned", "mode_config"}  # validate's own outputs use these names


def parse_ratios(text: str) -> dict[str, float]:
    """'train:0.7,val:0.15,test:0.15' -> {'train': 0.7, 'val': 0.15, 'test': 0.15}; ratios are normalised."""
    ratios: dict[str, float] = {}
    fix = "write the split as name:ratio pairs, e.g. train:0.7,val:0.15,test:0.15"
    for item in text.split(","):
        name, sep, value = item.strip().partition(":")
        try:
            ratio = float(value)
        except ValueError:
            raise DatasetError(f"cannot read '{item.strip()}'", where="--split", fix=fix) from None
        if not sep or not name or ratio < 0 or name in ratios:
            raise DatasetError(f"cannot read '{item.strip()}'", where="--split", fix=fix)
        if not SPLIT_NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise DatasetError(f"'{name}' cannot name a split (it becomes the file {name}.json)", where="--split",
                               fix="use letters, digits, '_' or '-', and none of " + ", ".join(sorted(RESERVED_NAMES)))
        ratios[name] = ratio
    total = sum(ratios.values())
    if len(ratios) < 2 or total <= 0:
        raise DatasetError("needs at least two splits with positive ratios", where="--split", fix=fix)
    return {name: ratio / total for name, ratio in ratios.items()}


def stratified_split(
    image_labels: Mapping[int, Sequence[int]], ratios: Mapping[str, float], seed: int
) -> dict[str, list[int]]:
    """Assign every image id to exactly one split; same input and seed give the same split."""
    rng = np.random.default_rng(seed)
    names = list(ratios)
    fractions = np.array([ratios[name] for name in names])
    image_ids = np.array(sorted(image_labels), dtype=np.int64)
    rng.shuffle(image_ids)
    n_images = len(image_ids)

    # Desired number of images per split and, per class, of images holding that class.
    desired = _apportion(n_images, fractions)
    classes = sorted({label for labels in image_labels.values() for label in labels})
    class_index = {label: i for i, label in enumerate(classes)}
    labels_of = [np.array(sorted({class_index[c] for c in image_labels[int(i)]}), dtype=np.int64) for i in image_ids]
    per_class_total = np.zeros(len(classes), dtype=np.int64)
    for labels in labels_of:
        per_class_total[labels] += 1
    desired_per_class = np.stack([_apportion(int(total), fractions) for total in per_class_total], axis=0) \
        if classes else np.zeros((0, len(names)), dtype=np.int64)

    assignment = np.full(n_images, -1, dtype=np.int64)
    images_with_class: list[list[int]] = [[] for _ in classes]
    for position, labels in enumerate(labels_of):
        for label in labels:
            images_with_class[label].append(position)
    remaining = per_class_total.copy()

    while remaining.any():
        # The class with the fewest unassigned images goes next (ties broken by the shuffled order).
        label = int(np.argmin(np.where(remaining > 0, remaining, np.iinfo(np.int64).max)))
        for position in images_with_class[label]:
            if assignment[position] >= 0:
                continue
            split = _pick_split(desired_per_class[label], desired, rng)
            assignment[position] = split
            desired[split] -= 1
            for other in labels_of[position]:
                desired_per_class[other, split] -= 1
                remaining[other] -= 1
    for position in np.flatnonzero(assignment < 0):  # negatives, in shuffled order
        split = _pick_split(desired, desired, rng)
        assignment[position] = split
        desired[split] -= 1
    return {name: sorted(int(i) for i in image_ids[assignment == k]) for k, name in enumerate(names)}


def _apportion(total: int, fractions: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total`, as close to total*fractions as possible (largest remainders)."""
    raw = total * fractions
    counts = np.floor(raw).astype(np.int64)
    for index in np.argsort(-(raw - counts), kind="stable")[: total - int(counts.sum())]:
        counts[index] += 1
    return counts


def _pick_split(wanted: np.ndarray, overall: np.ndarray, rng: np.random.Generator) -> int:
    """The split that wants this class most; ties go to the split wanting most images overall, then at random."""
    candidates = np.flatnonzero(wanted == wanted.max())
    if len(candidates) > 1:
        candidates = candidates[overall[candidates] == overall[candidates].max()]
    return int(candidates[0] if len(candidates) == 1 else rng.choice(candidates))
