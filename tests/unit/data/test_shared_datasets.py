"""The real public datasets in ../shared/datasets and their quirks (skipped when the folder is absent)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlcore.data.prepare import prepare_dataset


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def prepare(shared: Path, relative: str, tmp_path: Path, **kwargs):
    path = shared / relative
    report = prepare_dataset(path, output_dir=tmp_path / "out", progress=False, **kwargs)
    return report, {f.code: f for f in report.findings}


def test_fruits_nuts_polygons_and_image_id_zero(shared_datasets, tmp_path):
    report, _ = prepare(shared_datasets, "fruits_nuts/trainval.json", tmp_path)
    assert report.usable and report.annotation_mode == "detection_and_segmentation"
    assert report.num_classes == 3 and report.statistics.images == 18 and report.statistics.annotations == 165
    ids = {image["id"] for image in json.loads(Path(report.outputs["cleaned"]).read_text())["images"]}
    assert 0 in ids


def test_raccoon_boxes_only_with_unused_category_zero(shared_datasets, tmp_path):
    report, codes = prepare(shared_datasets, "raccoon_roboflow/_annotations.coco.json", tmp_path)
    assert report.usable and report.annotation_mode == "detection_only"
    assert Path(report.images_root).name == "images"
    assert codes["placeholder_category"].path == "categories[0]" and "Roboflow" in codes["placeholder_category"].message
    assert "category_unused" not in codes
    mode_config = json.loads(Path(report.outputs["mode_config"]).read_text())
    assert mode_config["num_classes"] == 1 and mode_config["category_ids"] == {"0": 1}


def test_coco128_crowd_rle_multipart_and_negatives(shared_datasets, tmp_path):
    source = shared_datasets / "coco128_coco/annotations/instances_train2017.json"
    data = json.loads(source.read_text())
    assert any(a["iscrowd"] and isinstance(a["segmentation"], dict) for a in data["annotations"])
    assert any(len(a["segmentation"]) > 1 for a in data["annotations"] if not a["iscrowd"])
    report, codes = prepare(shared_datasets, "coco128_coco/annotations/instances_train2017.json", tmp_path,
                            split="train:0.7,val:0.15,test:0.15")
    assert report.usable and report.annotation_mode == "detection_and_segmentation"
    assert Path(report.images_root).name == "train2017"  # COCO's own layout, found without --images
    assert report.statistics.negative_images == 2 and report.statistics.crowd_annotations > 0
    assert report.num_classes == 71
    assert sum(report.splits.values()) == 128
    # Boxes made from the masks are COCO's own boxes (the polygon extents), to COCO's two decimals.
    cleaned = {a["id"]: a for a in json.loads(Path(report.outputs["cleaned"]).read_text())["annotations"]}
    # Areas are COCO's own (the polygons' area) wherever the polygon lies inside its image.
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    for ann in data["annotations"]:
        if not ann["iscrowd"]:
            assert cleaned[ann["id"]]["bbox"] == pytest.approx(ann["bbox"], abs=0.01)
            width, height = sizes[ann["image_id"]]
            coords = [v for part in ann["segmentation"] for v in part]
            if min(coords) >= 0 and max(coords[0::2]) <= width and max(coords[1::2]) <= height:
                assert cleaned[ann["id"]]["area"] == pytest.approx(ann["area"], abs=0.01)


def test_labelme_subfolder_file_names_and_background_category(shared_datasets, tmp_path):
    data = json.loads((shared_datasets / "labelme_voc3_coco/annotations.json").read_text())
    assert all("/" in image["file_name"] for image in data["images"])
    report, codes = prepare(shared_datasets, "labelme_voc3_coco/annotations.json", tmp_path)
    assert report.usable and report.num_classes == 6
    assert "_background_" not in json.loads(Path(report.outputs["mode_config"]).read_text())["class_mapping"].values()


def test_masks_only_copy_is_segmentation_only(shared_datasets, tmp_path):
    data = json.loads((shared_datasets / "fruits_nuts/trainval.json").read_text())
    original = {a["id"]: a["bbox"] for a in data["annotations"]}
    for ann in data["annotations"]:
        del ann["bbox"], ann["area"]
    copy = tmp_path / "masks_only.json"
    copy.write_text(json.dumps(data))
    report = prepare_dataset(copy, images_dir=shared_datasets / "fruits_nuts/images", progress=False)
    assert report.usable and report.annotation_mode == "segmentation_only"
    made = json.loads(Path(report.outputs["cleaned"]).read_text())["annotations"]
    assert all(m["bbox"] == pytest.approx(original[m["id"]], abs=1.0) and m["area"] > 0 for m in made)


def test_shared_datasets_are_never_written(shared_datasets, tmp_path):
    before = tree_digest(shared_datasets)
    for relative in ("fruits_nuts/trainval.json", "raccoon_roboflow/_annotations.coco.json"):
        prepare_dataset(shared_datasets / relative, output_dir=tmp_path / relative.split("/")[0],
                        split="train:0.8,val:0.2", progress=False)
    assert tree_digest(shared_datasets) == before
