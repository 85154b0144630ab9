"""What labelling tools really write, one quirk per test, on small files each test makes (issue: real exports in)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.prepare import prepare_dataset

from .conftest import CocoBuilder, square
from .test_validation import run


def codes_of(report) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for finding in report.findings:
        by_code.setdefault(finding.code, []).append(finding)
    return by_code


def uncompressed_rle(height: int, width: int, x: int, y: int, w: int, h: int) -> dict:
    """A rectangle as COCO's uncompressed RLE (column-major runs), as CVAT's COCO 1.0 export writes masks."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y:y + h, x:x + w] = 1
    flat = mask.flatten(order="F")
    counts, current, run_length = [], 0, 0
    for value in flat:
        if value == current:
            run_length += 1
        else:
            counts.append(run_length)
            current, run_length = value, 1
    counts.append(run_length)
    return {"size": [height, width], "counts": counts}


# 2. CVAT "COCO 1.0": every mask iscrowd=1 uncompressed RLE.
@pytest.fixture
def cvat_masks(coco: CocoBuilder) -> CocoBuilder:
    coco.category(1, "car")
    coco.category(2, "bus")
    for image_id in (1, 2, 3):
        coco.image(image_id)
        for category_id, (x, y, w, h) in ((1, (10, 10, 20, 15)), (2, (50, 30, 30, 30))):
            coco.annotation(image_id, category_id, bbox=[x, y, w, h], iscrowd=1,
                            segmentation=uncompressed_rle(80, 100, x, y, w, h))
    return coco


def test_cvat_crowd_masks_are_trained_as_instances_by_default(cvat_masks):
    report, codes = run(cvat_masks)
    assert report.usable and report.num_classes == 2 and report.annotation_mode == "detection_and_segmentation"
    assert len(codes["crowd_as_instances"]) == 1 and "CVAT" in codes["crowd_as_instances"][0].message
    assert report.repairs["crowd_as_instances"] == 6
    cleaned = json.loads(Path(report.outputs["cleaned"]).read_text())
    assert {ann["iscrowd"] for ann in cleaned["annotations"]} == {0}


def test_cvat_crowd_masks_kept_as_crowd_leave_nothing_to_train_and_say_so(cvat_masks):
    report, codes = run(cvat_masks, crowd_as_instances="no")
    assert not report.usable and report.num_classes == 0
    assert "crowd" in codes["nothing_to_train"][0].message and "--crowd-as-instances yes" in codes["nothing_to_train"][0].fix


def test_coco_style_rare_crowd_regions_stay_crowd(coco):
    coco.category(1, "person")
    coco.image(1)
    for i in range(5):
        coco.annotation(1, 1, segmentation=square(5 + i, 5, 10), bbox=[5 + i, 5, 10, 10])
    coco.annotation(1, 1, iscrowd=1, segmentation=uncompressed_rle(80, 100, 40, 40, 20, 20))
    report, codes = run(coco)
    assert report.usable and report.statistics.crowd_annotations == 1 and "crowd_as_instances" not in codes
    forced, forced_codes = run(coco, crowd_as_instances="yes")
    assert forced.statistics.crowd_annotations == 0 and "--crowd-as-instances yes" in forced_codes["crowd_as_instances"][0].message


# 3. Windows paths (Label Studio on Windows).
def test_windows_backslashes_are_normalised_in_cleaned_and_split_files(coco):
    coco.category(1, "cat")
    for image_id in range(1, 7):
        coco.image(image_id, file_name=f"sub/img_{image_id}.png")
        coco.data["images"][-1]["file_name"] = f"sub\\img_{image_id}.png"
        coco.annotation(image_id, 1, bbox=[1, 1, 5, 5])
    report, codes = run(coco, split="train:0.5,val:0.5")
    assert report.usable and len(codes["file_name_backslashes"]) == 1
    assert codes["file_name_backslashes"][0].count == 6
    for output in ("cleaned", "train", "val"):
        names = [image["file_name"] for image in json.loads(Path(report.outputs[output]).read_text())["images"]]
        assert names and all(name.startswith("sub/") and "\\" not in name for name in names)


# 4. Image folder discovery.
def test_cvat_layout_finds_images_in_the_sibling_images_folder(tmp_path):
    builder = CocoBuilder(tmp_path / "export")  # writes images into export/images
    builder.category(1, "cat")
    builder.image(1)
    builder.annotation(1, 1, bbox=[1, 1, 5, 5])
    (tmp_path / "export" / "annotations").mkdir()
    path = builder.write("annotations/instances_default.json")
    report = prepare_dataset(path, output_dir=tmp_path / "out", progress=False)
    assert report.usable and Path(report.images_root) == tmp_path / "export" / "images"


def test_images_given_with_a_prefix_the_file_names_repeat(tmp_path):
    """Label Studio writes file_name 'images/x.jpg'; a user passes --images dataset/images."""
    builder = CocoBuilder(tmp_path / "dataset")
    builder.category(1, "cat")
    builder.image(1, file_name="images/a.png")  # lands in dataset/images/images/a.png
    shutil.move(tmp_path / "dataset/images/images/a.png", tmp_path / "dataset/images/a.png")
    builder.annotation(1, 1, bbox=[1, 1, 5, 5])
    path = builder.write()
    report = prepare_dataset(path, images_dir=tmp_path / "dataset/images", output_dir=tmp_path / "out",
                             progress=False)
    assert report.usable and Path(report.images_root) == tmp_path / "dataset"


def test_no_folder_holds_the_images_is_one_finding_naming_where_they_are(tmp_path):
    builder = CocoBuilder(tmp_path / "export")
    builder.category(1, "cat")
    for image_id in range(1, 40):
        builder.image(image_id)
        builder.annotation(image_id, 1, bbox=[1, 1, 5, 5])
    (tmp_path / "export/images").rename(tmp_path / "export/my photos")
    report, codes = run(builder)
    assert not report.usable and set(codes) <= {"images_not_found", "category_unused"}
    found = codes["images_not_found"][0]
    assert str(tmp_path / "export/images") in found.message and "my photos holds 39" in found.message
    assert "--images" in found.fix and "my photos" in found.fix


# 5. Split leakage.
def roboflow_copies(coco: CocoBuilder, photos: int = 12, copies: int = 3) -> CocoBuilder:
    coco.category(1, "cat")
    coco.category(2, "dog")
    image_id = 0
    for photo in range(photos):
        for copy in range(copies):
            image_id += 1
            name = f"photo_{photo}_jpg.rf.{image_id:032x}.jpg"
            image = coco.image(image_id, file_name=name, write=False)
            Image.new("RGB", (100, 80), (photo * 10, copy * 40, 90)).save(coco.root / "images" / name, "JPEG")
            image["extra"] = {"name": f"photo_{photo}_jpg"}
            coco.annotation(image_id, 1 + photo % 2, bbox=[1, 1, 5, 5])
    return coco


def split_of_each(report) -> dict[str, str]:
    return {image["file_name"]: name for name in report.splits
            for image in json.loads(Path(report.outputs[name]).read_text())["images"]}


def test_copies_of_one_photo_stay_in_one_split(coco):
    report, codes = run(roboflow_copies(coco), split="train:0.5,val:0.25,test:0.25")
    splits = split_of_each(report)
    by_photo: dict[str, set[str]] = {}
    for name, split in splits.items():
        by_photo.setdefault(name.split("_jpg")[0], set()).add(split)
    assert len(by_photo) == 12 and all(len(s) == 1 for s in by_photo.values())
    assert set(splits.values()) == {"train", "val", "test"} and "extra.name" in report.split_groups
    assert "split_by_group" in codes


def test_group_by_regex_keeps_frames_of_one_clip_together(coco):
    coco.category(1, "cat")
    for clip in range(6):
        for frame in range(4):
            image_id = clip * 4 + frame + 1
            coco.image(image_id, file_name=f"clip{clip}_frame_{frame:04d}.png")
            coco.annotation(image_id, 1, bbox=[1, 1, 5, 5])
    report, _ = run(coco, split="train:0.5,val:0.5", group_by=r"^(clip\d+)_frame")
    clips: dict[str, set[str]] = {}
    for name, split in split_of_each(report).items():
        clips.setdefault(name.split("_")[0], set()).add(split)
    assert len(clips) == 6 and all(len(s) == 1 for s in clips.values())


def test_exact_duplicate_images_across_splits_are_warned(coco):
    coco.category(1, "cat")
    for image_id in range(1, 9):
        coco.image(image_id)
        coco.annotation(image_id, 1, bbox=[1, 1, 5, 5])
    for image_id in range(2, 9):  # every image a byte copy of the first one
        shutil.copyfile(coco.root / "images/img_1.png", coco.root / f"images/img_{image_id}.png")
    report, codes = run(coco, split="train:0.5,val:0.5")
    assert "same content" in codes["duplicate_images_across_splits"][0].message


# 6. Quotes and repairs.
def test_mismatch_quotes_the_files_box_not_the_clipped_one(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[-30, 10, 60, 20], segmentation=square(40, 40, 10))
    _, codes = run(coco)
    assert "bbox [-30, 10, 60, 20]" in codes["bbox_mask_mismatch"][0].message


def test_zero_width_box_on_a_masked_annotation_is_reported_and_replaced(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[0, 20, 0, 30], segmentation=square(10, 20, 30))
    report, codes = run(coco)
    finding = codes["bbox_replaced_by_mask"][0]
    assert "[0, 20, 0, 30]" in finding.message and "[10, 20, 30, 30]" in finding.message
    assert json.loads(Path(report.outputs["cleaned"]).read_text())["annotations"][0]["bbox"] == [10, 20, 30, 30]


def test_polygon_reaching_outside_the_image_is_reported(coco):
    coco.category(1, "cat")
    coco.image(1)  # 100x80
    coco.annotation(1, 1, segmentation=[[80, 10, 130, 10, 130, 40, 80, 40]])
    report, codes = run(coco)
    assert report.usable and "30 px outside the 100x80 image" in codes["polygon_clipped"][0].message
    assert json.loads(Path(report.outputs["cleaned"]).read_text())["annotations"][0]["bbox"] == [80, 10, 20, 30]


# 7. Counts that say what happened.
def test_unused_category_says_its_annotations_were_dropped_and_why(coco):
    coco.category(1, "cat")
    coco.category(2, "rare")
    coco.image(1)
    coco.image(2, write=False)  # missing: the only 'rare' annotations are on it
    coco.image(3)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    coco.annotation(2, 2, bbox=[1, 1, 5, 5])
    coco.annotation(3, 2, bbox=[500, 500, 5, 5])  # outside the image
    report, codes = run(coco)
    message = codes["category_unused"][0].message
    assert "2 annotation(s) were dropped" in message and "image_missing" in message and "bbox_outside_image" in message


def test_image_whose_annotations_were_all_rejected_is_not_a_negative(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.image(2)
    coco.image(3)  # a true negative: nothing annotated
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    coco.annotation(2, 1, bbox=[500, 500, 5, 5])  # dropped: image 2 would otherwise train as background
    report, codes = run(coco)
    assert report.statistics.negative_images == 1 and report.statistics.images == 2
    assert "image_lost_all_annotations" in codes
    assert "1 image(s) have no annotation" in codes["negative_images"][0].message


# 9. Lenient where it is safe.
def test_float_and_numeric_string_ids_are_converted_with_one_warning(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.image(2)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    coco.annotation(2, 1, bbox=[1, 1, 5, 5])
    coco.data["images"][0]["id"] = 1.0
    coco.data["annotations"][0]["image_id"] = "1"
    coco.data["annotations"][1].update(image_id=2.0, category_id="1")
    report, codes = run(coco)
    assert report.usable and len(codes["id_converted"]) <= 2  # one per list: images, annotations
    cleaned = json.loads(Path(report.outputs["cleaned"]).read_text())
    assert [type(a["image_id"]) for a in cleaned["annotations"]] == [int, int]
    assert [a["category_id"] for a in cleaned["annotations"]] == [1, 1]


def test_every_problem_of_a_record_is_reported(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    coco.data["annotations"][0].update(image_id="one", category_id=None, bbox="1,1,5,5")
    _, codes = run(coco)
    places = {place for finding in codes["schema"] for place in (finding.places or [finding.path])}
    assert places == {"annotations[0].image_id", "annotations[0].category_id", "annotations[0].bbox"}


def test_many_records_with_one_cause_are_one_finding(coco):
    coco.category(1, "cat")
    for cid in range(100, 225):
        coco.category(cid, f"unused {cid}")
    coco.image(1)
    for _ in range(300):
        coco.annotation(1, 7, bbox=[1, 1, 5, 5])  # 300 annotations naming one missing category id
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    report, codes = run(coco)
    assert len(codes["category_unused"]) == 1 and codes["category_unused"][0].count == 125
    assert len(codes["unknown_category_id"]) == 1 and "7 (300 annotations)" in codes["unknown_category_id"][0].message
    assert len(report.findings) <= 4


def test_rectangle_polygons_count_as_boxes(coco):
    """VIA writes boxes as 4-point polygons: no shape, so the mode is boxes."""
    coco.category(1, "dog")
    coco.image(1)
    for i in range(3):
        coco.annotation(1, 1, bbox=[5 + i, 5, 10, 10], segmentation=[[5 + i, 5, 15 + i, 5, 15 + i, 15, 5 + i, 15]])
    report, codes = run(coco)
    assert report.annotation_mode == "detection_only" and "masks_are_boxes" in codes


def test_git_lfs_pointer_images_are_one_error_naming_git_lfs(coco):
    coco.category(1, "cat")
    for image_id in (1, 2, 3):
        coco.image(image_id)
        coco.annotation(image_id, 1, bbox=[1, 1, 5, 5])
        (coco.root / f"images/img_{image_id}.png").write_text(
            "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12345\n")
    report, codes = run(coco)
    assert not report.usable and len(codes["image_lfs_pointer"]) == 1
    assert "git lfs pull" in codes["image_lfs_pointer"][0].fix and codes["image_lfs_pointer"][0].count == 3


def test_url_file_names_are_a_clear_error(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.image(2, file_name="https://example.invalid/a.jpg", write=False)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    report, codes = run(coco)
    assert not report.usable and "URL" in codes["file_name_is_url"][0].message


# --images everywhere: split files carry their images root.
def test_split_files_record_their_images_root_for_later_commands(coco, tmp_path):
    coco.category(1, "cat")
    for image_id in range(1, 7):
        coco.image(image_id)
        coco.annotation(image_id, 1, bbox=[1, 1, 5, 5])
    report, _ = run(coco, split="train:0.5,val:0.5")
    moved = tmp_path / "elsewhere" / "train.json"
    moved.parent.mkdir()
    shutil.copyfile(report.outputs["train"], moved)  # no .mode_config.json beside it
    dataset = CocoDataset(moved)
    assert dataset.images_root == coco.root / "images" and dataset[0].image_path.is_file()


# Export folders.
def test_roboflow_export_folder_keeps_its_own_splits(tmp_path):
    export = tmp_path / "export"
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        folder = export / split
        folder.mkdir(parents=True)
        images, annotations = [], []
        for i in range(count):
            name = f"{split}_{i}.jpg"
            Image.new("RGB", (64, 48), (i * 30, 60, 90)).save(folder / name, "JPEG")
            images.append({"id": i, "file_name": name, "width": 64, "height": 48})
            annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100,
                                "iscrowd": 0, "segmentation": []})
        categories = [{"id": 0, "name": "pets", "supercategory": "none"},
                      {"id": 1, "name": "cat", "supercategory": "pets"}]
        (folder / "_annotations.coco.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    report = prepare_dataset(export, output_dir=tmp_path / "out", split="train:0.7,val:0.3", progress=False)
    codes = codes_of(report)
    assert report.usable and report.export_layout == "roboflow" and report.num_classes == 1
    assert report.splits == {"train": 6, "val": 2, "test": 2}
    assert "Roboflow" in codes["export_layout"][0].message and "--split ignored" in codes["export_layout"][0].message
    assert {name.split("/")[0] for name in split_of_each(report)} == {"train", "valid", "test"}
    for name, split in split_of_each(report).items():
        assert name.startswith({"train": "train/", "val": "valid/", "test": "test/"}[split])


def test_absolute_paths_and_urls_whose_files_are_in_the_folder_are_rebased(coco):
    """Label Studio without its images writes /data/upload/3/x.jpg or a URL; the images sit in a folder by name."""
    coco.category(1, "cat")
    for image_id in (1, 2, 3):
        coco.image(image_id)
        coco.annotation(image_id, 1, bbox=[1, 1, 5, 5], iscrowd="0")
    coco.data["images"][0]["file_name"] = "/data/upload/3/img_1.png"
    coco.data["images"][1]["file_name"] = "http://localhost:8080/data/local-files/?d=photos/img_2.png"
    coco.data["images"][2]["file_name"] = "C:\\Users\\me\\Pictures\\img_3.png"
    report, codes = run(coco, images_dir=coco.root / "images")
    assert report.usable and codes["file_name_rebased"][0].count == 3
    cleaned = json.loads(Path(report.outputs["cleaned"]).read_text())
    assert [image["file_name"] for image in cleaned["images"]] == ["img_1.png", "img_2.png", "img_3.png"]
    assert {ann["iscrowd"] for ann in cleaned["annotations"]} == {0}  # "0" read as 0
