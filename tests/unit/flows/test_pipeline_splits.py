"""Which files the pipeline trains, validates and compares on when validate split the data itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.pipeline import StageFailed, _splits
from mlcore.data.prepare import DatasetReport


def report(tmp_path: Path, counts: dict[str, int]) -> DatasetReport:
    outputs = {name: str(tmp_path / f"{name}.json") for name in counts}
    return DatasetReport(dataset=str(tmp_path / "a.json"), dataset_sha256="0" * 64, images_root=str(tmp_path),
                         output_dir=str(tmp_path), usable=True, annotation_mode="detection_only", num_classes=1,
                         counts={}, splits=counts, findings=[], outputs=outputs)


def test_the_three_parts_are_used_as_split(tmp_path: Path) -> None:
    splits = _splits(None, report(tmp_path, {"train": 8, "val": 2, "test": 2}), None, None, tmp_path)
    assert splits == {name: str(tmp_path / f"{name}.json") for name in ("train", "val", "test")}


def test_an_empty_test_part_falls_back_to_val_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    splits = _splits(None, report(tmp_path, {"train": 5, "val": 1, "test": 0}), None, None, tmp_path)
    assert splits["test"] == splits["val"] == str(tmp_path / "val.json")
    assert "the test part of split" in capsys.readouterr().out


def test_an_empty_val_part_fails_with_the_counts_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StageFailed, match=r"'val': 0.*enough images for each part"):
        _splits(None, report(tmp_path, {"train": 5, "val": 0, "test": 1}), None, None, tmp_path)
