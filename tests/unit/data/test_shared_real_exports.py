"""`mlcore validate` over the real labelling-tool exports in ../shared/datasets/real_exports (skipped when absent):
the exit code, mode, classes and findings a user gets for each, through the CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_shared_datasets import tree_digest

# file (relative to real_exports/), extra CLI arguments -> exit code, mode, classes, findings that must be there and
# findings that must not.
CASES = {
    "cvat_cars/annotations/instances_default.json": (
        [], 0, "detection_and_segmentation", 10, {"bbox_mask_mismatch", "bbox_replaced_by_mask", "category_unused"},
        {"image_missing", "images_not_found"}),
    "cvat_cars": ([], 0, "detection_and_segmentation", 10, {"export_layout"}, set()),
    "labelstudio_cars/dataset/result.json": ([], 0, "detection_only", 2, set(), {"image_missing"}),
    "labelstudio_cars/dataset": ([], 0, "detection_only", 2, {"export_layout"}, set()),
    "roboflow_fruit/_annotations.coco.json": ([], 0, "detection_only", 8, set(), set()),
    # 3 of its 9 images are in the folder: the placeholder is handled, the missing images are one error.
    "roboflow_seg3/_annotations.coco.json": (
        [], 2, None, 2, {"duplicate_category_dropped", "image_missing"},
        {"duplicate_category_name", "unknown_category_id"}),
    "mmpose_kp/tests/data/coco/test_coco.json": ([], 0, "detection_and_segmentation", 1, {"keypoints_ignored"}, set()),
    "panoptic/sample_data/panoptic_coco_detection_format.json": (
        ["--images", "{root}/panoptic/sample_data/input_images"], 0, "detection_and_segmentation", 8, set(),
        {"schema"}),
    "panoptic/sample_data/images_info_examples.json": (
        ["--images", "{root}/panoptic/sample_data/input_images"], 2, None, 0, {"no_annotations"}, set()),
    "mmdet_sample/coco_sample.json": ([], 2, None, 0, {"images_not_found", "scores_in_ground_truth"},
                                      {"image_missing"}),
    "via_dogs/A12/A12-B/AM-EVA12 Final via_export_coco Final.json": (
        ["--images", "{root}/via_dogs/A12/A12-B/dog images"], 2, None, 0, {"no_categories", "schema"},
        {"image_missing", "no_annotations"}),
}
# Not COCO instances files at all: one message naming what the file is, exit 2, no traceback.
LOOKALIKES = {
    "panoptic/sample_data/panoptic_examples.json": "panoptic",
    "mmpose_kp/tests/data/coco/test_coco_det_AP_H_56.json": "detection results",
    "roboflow_seg3/via_annotations.json": "VIA",
}


def validate(target: Path, output: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlcore.cli.app", "validate", "--data", str(target), "--output",
                           str(output), "--json", "--no-progress", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("relative", sorted(CASES))
def test_real_export_validates_as_expected(shared_datasets, tmp_path, relative):
    root = shared_datasets / "real_exports"
    args, exit_code, mode, classes, present, absent = CASES[relative]
    before = tree_digest(root / relative.split("/")[0])
    result = validate(root / relative, tmp_path / "out", *[arg.format(root=root) for arg in args])
    assert result.returncode == exit_code, result.stderr
    report = json.loads(result.stdout)
    codes = {finding["code"] for finding in report["findings"]}
    assert report["annotation_mode"] == mode and report["num_classes"] == classes
    assert present <= codes and not (absent & codes), codes
    assert len(report["findings"]) < 12  # one finding per root cause, never a cascade
    assert tree_digest(root / relative.split("/")[0]) == before  # the export is only read


def test_via_export_names_the_image_folder_it_could_not_find(shared_datasets, tmp_path):
    target = shared_datasets / "real_exports/via_dogs/A12/A12-B/AM-EVA12 Final via_export_coco Final.json"
    report = json.loads(validate(target, tmp_path / "out").stdout)
    found = [f for f in report["findings"] if f["code"] == "images_not_found"]
    assert len(found) == 1 and "dog images" in found[0]["message"] and "--images" in found[0]["fix"]
    schema = [f for f in report["findings"] if f["code"] == "schema"]
    assert len(schema) == 1 and "'category_id' is missing" in schema[0]["message"]  # 51 records, one finding


def test_cvat_export_folder_finds_images_in_the_sibling_images_folder(shared_datasets, tmp_path):
    result = validate(shared_datasets / "real_exports/cvat_cars", tmp_path / "out", "--split",
                      "train:0.5,val:0.5")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and Path(report["images_root"]).name == "images"
    assert report["export_layout"] == "cvat" and sum(report["splits"].values()) == 6
    train = json.loads(Path(report["outputs"]["train"]).read_text())
    assert train["mlcore"]["images_root"] == report["images_root"]  # later commands need no --images


@pytest.mark.parametrize("relative", sorted(LOOKALIKES))
def test_lookalike_files_get_one_message(shared_datasets, tmp_path, relative):
    result = validate(shared_datasets / "real_exports" / relative, tmp_path / "out")
    assert result.returncode == 2 and not result.stdout
    assert LOOKALIKES[relative] in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr
