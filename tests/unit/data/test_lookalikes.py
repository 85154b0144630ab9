"""Files that are not COCO instances files (predictions, tool exports, panoptic, LFS pointers) get one clear message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.data.coco_reader import RawCoco, read_coco
from mlcore.data.lookalikes import keypoints_note
from mlcore.errors import DatasetError

RLE = {"size": [80, 100], "counts": "PPYo1"}
IMAGE = {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}

# Each look-alike, modelled on a real export: (file text, words naming the kind, words naming the conversion).
LOOKALIKES = {
    "results": (
        [{"bbox": [277.1, 45.7, 225.1, 333.6], "category_id": 1, "image_id": 785, "score": 0.99},
         {"segmentation": RLE, "category_id": 1, "image_id": 785, "score": 0.3}],
        "detection results file (model predictions)", "--predictions"),
    "label_studio": (
        [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}, "predictions": [],
          "annotations": [{"id": 1, "result": [{"type": "rectanglelabels", "from_name": "label", "to_name": "image",
                                                 "value": {"x": 10, "y": 10, "width": 20, "height": 20,
                                                           "rectanglelabels": ["car"]}}]}]}],
        "Label Studio JSON task export", "Export -> 'COCO'"),
    "label_studio_min": (
        [{"image": "/data/upload/1/a.jpg", "id": 1, "annotator": 1, "annotation_id": 1, "lead_time": 3.2,
          "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
          "label": [{"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"]}]}],
        "Label Studio JSON-MIN export", "Export -> 'COCO'"),
    "via": (
        {"a.jpg43846": {"filename": "a.jpg", "size": 43846, "file_attributes": {},
                        "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": [1, 9, 9],
                                                          "all_points_y": [1, 1, 9]}, "region_attributes": {}}]}},
        "VIA (VGG Image Annotator) annotation file", "Export Annotations (COCO format)"),
    "via_project": (
        {"_via_settings": {"ui": {}}, "_via_attributes": {"region": {}}, "_via_img_metadata": {}},
        "VIA (VGG Image Annotator) project file", "Export Annotations (COCO format)"),
    "panoptic": (
        {"images": [IMAGE], "categories": [{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]}],
         "annotations": [{"file_name": "a.png", "image_id": 1, "segments_info": [
             {"id": 3937500, "category_id": 1, "iscrowd": 0, "area": 3528, "bbox": [28, 20, 48, 14]}]}]},
        "COCO panoptic file", "panoptic2detection_coco_format.py"),
    "labelme": (
        {"version": "5.2.1", "flags": {}, "imagePath": "a.jpg", "imageData": None, "imageHeight": 80,
         "imageWidth": 100, "shapes": [{"label": "cat", "points": [[1, 1], [9, 1], [9, 9]], "group_id": None,
                                        "shape_type": "polygon", "flags": {}}]},
        "labelme file", "labelme2coco.py"),
    "git_lfs": (
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123456789\n",
        "Git LFS pointer", "git lfs pull"),
}


def write(tmp_path: Path, content, name: str = "annotations.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def instances(**extra) -> dict:
    return {"images": [IMAGE], "categories": [{"id": 1, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}], **extra}


@pytest.mark.parametrize("kind", LOOKALIKES)
def test_lookalike_is_named_with_its_conversion(tmp_path, kind):
    content, named, conversion = LOOKALIKES[kind]
    path = write(tmp_path, content)
    with pytest.raises(DatasetError) as error:
        read_coco(path)
    assert named in error.value.message and conversion in error.value.fix and error.value.where == str(path)


@pytest.mark.parametrize("kind", LOOKALIKES)
def test_cli_prints_one_message_and_exits_2(tmp_path, kind):
    content, named, conversion = LOOKALIKES[kind]
    path = write(tmp_path, content)
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "mlcore.cli.app", "validate", "--data", str(path),
                             "--output", str(tmp_path / "out"), "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert named in result.stderr and conversion in result.stderr


def test_predictions_with_nan_scores_are_still_named(tmp_path):
    path = write(tmp_path, '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]')
    with pytest.raises(DatasetError, match="detection results file"):
        read_coco(path)


def test_unknown_list_keeps_the_generic_message(tmp_path):
    createml = [{"image": "a.jpg", "annotations": [{"label": "cat", "coordinates": {"x": 5, "y": 5, "width": 4,
                                                                                      "height": 4}}]}]
    with pytest.raises(DatasetError, match="the top level is not a JSON object"):
        read_coco(write(tmp_path, createml))


def test_instances_file_with_png_images_and_masks_is_not_panoptic(tmp_path):
    data = instances()
    data["images"][0]["file_name"] = "a.png"
    data["annotations"][0].update(file_name="a.png", segmentation=RLE)
    assert len(read_coco(write(tmp_path, data)).annotations) == 1


def test_image_info_file_reads_and_says_it_has_no_annotations_key(tmp_path):
    data = instances()
    del data["annotations"]
    assert read_coco(write(tmp_path, data, "image_info.json")).has_annotations_key is False
    assert read_coco(write(tmp_path, instances())).has_annotations_key is True
    assert read_coco(write(tmp_path, instances(annotations=[]), "empty.json")).has_annotations_key is True


def test_keypoints_are_noted_as_ignored(tmp_path):
    data = instances()
    data["annotations"][0].update(keypoints=[12, 20, 2] * 17, num_keypoints=17)
    assert "ignored" in _keypoints_note(read_coco(write(tmp_path, data)))
    data = instances()
    data["categories"][0]["keypoints"] = ["nose", "left_eye"]
    assert "boxes and masks" in _keypoints_note(read_coco(write(tmp_path, data, "categories_only.json")))
    assert _keypoints_note(read_coco(write(tmp_path, instances(), "plain.json"))) is None


# Real exports in ../shared/datasets: what each one is (None: a COCO instances file that must keep reading).
SHARED = {
    "real_exports/panoptic/sample_data/panoptic_examples.json": "COCO panoptic file",
    "real_exports/panoptic/sample_data/panoptic_coco_detection_format.json": None,
    "real_exports/panoptic/sample_data/images_info_examples.json": None,
    "real_exports/mmpose_kp/tests/data/coco/test_coco_det_AP_H_56.json": "detection results file",
    "real_exports/mmpose_kp/tests/data/coco/test_coco.json": None,
    "real_exports/roboflow_seg3/via_annotations.json": "VIA (VGG Image Annotator) annotation file",
}


def test_shared_exports_are_recognised_and_instances_files_still_read(shared_datasets):
    for path in sorted(shared_datasets.rglob("*.json")):
        expected = SHARED.get(path.relative_to(shared_datasets).as_posix())
        if expected:
            with pytest.raises(DatasetError, match=re.escape(expected)):
                read_coco(path)
        else:
            raw = read_coco(path)  # every other shared file is a COCO instances file
            assert raw.images, path
    images_info = read_coco(shared_datasets / "real_exports/panoptic/sample_data/images_info_examples.json")
    assert images_info.has_annotations_key is False
    assert _keypoints_note(read_coco(shared_datasets / "real_exports/mmpose_kp/tests/data/coco/test_coco.json"))


def _keypoints_note(raw: RawCoco) -> str | None:
    return keypoints_note(raw.categories, raw.annotations)
