"""Splits are stratified on class presence, seeded, complete and disjoint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.data.prepare import prepare_dataset
from mlcore.data.split import parse_ratios, stratified_split
from mlcore.errors import DatasetError

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


@st.composite
def labelled_images(draw) -> dict[int, list[int]]:
    n = draw(st.integers(1, 120))
    return {i: draw(st.lists(st.integers(0, 6), max_size=4)) for i in range(n)}


@settings(max_examples=60, deadline=None)
@given(labelled_images(), st.integers(0, 10_000))
def test_every_image_lands_in_exactly_one_split(images, seed):
    splits = stratified_split(images, RATIOS, seed)
    assigned = [i for ids in splits.values() for i in ids]
    assert sorted(assigned) == sorted(images)
    assert splits == stratified_split(images, RATIOS, seed)


def test_sizes_follow_the_ratios():
    images = {i: [i % 5] for i in range(1000)}
    sizes = {name: len(ids) for name, ids in stratified_split(images, RATIOS, 0).items()}
    assert sizes == {"train": 700, "val": 150, "test": 150}


def test_classes_are_stratified_and_rare_classes_reach_every_split():
    # 600 common-class images, 20 images of a rare class, 40 negatives.
    images = {i: [0] for i in range(600)} | {600 + i: [0, 1] for i in range(20)} | {700 + i: [] for i in range(40)}
    splits = stratified_split(images, RATIOS, 3)
    rare = {name: sum(1 in images[i] for i in ids) for name, ids in splits.items()}
    assert rare == {"train": 14, "val": 3, "test": 3}
    negatives = {name: sum(not images[i] for i in ids) for name, ids in splits.items()}
    assert negatives == {"train": 28, "val": 6, "test": 6}


def test_a_different_seed_gives_a_different_split():
    images = {i: [i % 3] for i in range(100)}
    assert stratified_split(images, RATIOS, 1) != stratified_split(images, RATIOS, 2)


def test_parse_ratios():
    assert parse_ratios("train:7,val:1.5,test:1.5") == pytest.approx(RATIOS)
    for bad in ("train", "train:0.7", "train:x,val:1", "train:-1,val:1", "a:1,a:1"):
        with pytest.raises(DatasetError, match="--split"):
            parse_ratios(bad)


def test_split_files_are_coco_files_of_their_images(tmp_path):
    from mlcore.data.demo import make_demo_dataset

    path = make_demo_dataset(tmp_path / "demo", num_images=40, seed=1)
    report = prepare_dataset(path, split="train:0.7,val:0.15,test:0.15", seed=7, progress=False)
    source = json.loads(path.read_text())
    seen_images: Counter[int] = Counter()
    annotations = 0
    for name in ("train", "val", "test"):
        part = json.loads(Path(report.outputs[name]).read_text())
        ids = {image["id"] for image in part["images"]}
        seen_images.update(ids)
        assert all(a["image_id"] in ids for a in part["annotations"])
        assert part["categories"] == source["categories"] and part["info"] == source["info"]
        annotations += len(part["annotations"])
    assert set(seen_images) == {image["id"] for image in source["images"]} and max(seen_images.values()) == 1
    assert annotations == len(source["annotations"])
    # Class balance comes first, so split sizes may miss the ratios by an image.
    for name, expected in {"train": 28, "val": 6, "test": 6}.items():
        assert abs(report.splits[name] - expected) <= 1
