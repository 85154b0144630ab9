"""Which files the pipeline trains, validates and compares on, and with which images folder it validates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.pipeline import StageFailed, _splits
from mlcore.data.demo import make_demo_dataset
from mlcore.data.prepare import DatasetReport
from tests.unit.relocated import relocate


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


class RecordingStages:
    """Runs no task: records what each stage was given and answers with a usable validation of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.calls = tmp_path, {}

    def run(self, label: str, task, data: str, **options) -> DatasetReport:
        self.calls[label] = {"data": data, **options}
        return validated(self.tmp_path, data)


def validated(tmp_path: Path, data: str) -> DatasetReport:
    """A usable validation of DATA without a split (its cleaned copy is DATA itself)."""
    result = report(tmp_path, {})
    result.outputs["cleaned"] = data
    return result


def test_the_images_folder_reaches_the_validation_of_given_files_that_have_their_images_there(tmp_path: Path) -> None:
    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=3, negatives=0, image_size=(128, 96))
    val = relocate(source, source.parent / "images", tmp_path / "elsewhere")  # its images in the --images folder
    test = make_demo_dataset(tmp_path / "test", mode="boxes", num_images=2, negatives=0, image_size=(128, 96))
    listed = json.loads(test.read_text())
    for image in listed["images"]:  # its images beside it, as images/<name>: names the --images folder lacks
        image["file_name"] = f"images/{image['file_name']}"
    test.write_text(json.dumps(listed))
    stages = RecordingStages(tmp_path)
    training = validated(tmp_path, str(tmp_path / "train.json"))
    _splits(stages, training, str(val.annotations), str(test), tmp_path / "prepared", images=str(val.images))
    assert stages.calls["validate val"]["images"] == str(val.images)
    assert stages.calls["validate test"]["images"] is None  # found beside it, as validate finds them
    _splits(stages, training, str(val.annotations), None, tmp_path / "prepared")
    assert stages.calls["validate val"]["images"] is None
