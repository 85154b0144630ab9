"""Each validation rule, on the smallest dataset that shows it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlcore.data.prepare import prepare_dataset
from mlcore.errors import DatasetError

from .conftest import CocoBuilder, square


def run(coco: CocoBuilder, **kwargs):
    path = coco.write()
    report = prepare_dataset(path, progress=False, **kwargs)
    by_code: dict[str, list] = {}
    for finding in report.findings:
        by_code.setdefault(finding.code, []).append(finding)
    return report, by_code


def cleaned(report) -> dict:
    return json.loads(Path(report.outputs["cleaned"]).read_text())


@pytest.fixture
def basic(coco: CocoBuilder) -> CocoBuilder:
    coco.category(1, "cat")
    coco.image(1)
    coco.image(2)
    coco.annotation(1, 1, bbox=[10, 10, 20, 20])
    return coco


def test_clean_dataset_is_usable_without_findings_but_negatives(basic):
    report, codes = run(basic)
    assert report.usable and report.annotation_mode == "detection_only"
    assert set(codes) == {"negative_images"}
    assert report.counts == {"error": 0, "warning": 0, "info": 1}


def test_input_file_is_never_modified(basic):
    path = basic.write()
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    report = prepare_dataset(path, progress=False, split="train:0.5,val:0.5")
    assert report.dataset_sha256 == before[0]
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before


def test_schema_error_names_the_json_path(basic):
    basic.annotation(1, 1, bbox=[1, 1, 5, 5])
    basic.data["annotations"][-1]["image_id"] = "one"
    report, codes = run(basic)
    assert not report.usable
    assert codes["schema"][0].path == "annotations[1].image_id"
    assert "'image_id' is 'one', not a whole number" in codes["schema"][0].message


@pytest.mark.parametrize("kind", ["image", "category"])
def test_duplicate_image_and_category_ids_are_errors(basic, kind):
    if kind == "image":
        basic.image(1, file_name="other.png")
    else:
        basic.category(1, "dog")
    report, codes = run(basic)
    assert not report.usable
    finding = codes[f"duplicate_{kind}_id"][0]
    assert finding.path == ("images[2].id" if kind == "image" else "categories[1].id")


def test_duplicate_category_names_both_used_are_errors_with_ids_and_counts(basic):
    basic.category(2, "Cat ")
    basic.annotation(1, 2, bbox=[1, 1, 5, 5])
    report, codes = run(basic)
    assert not report.usable and codes["duplicate_category_name"][0].path == "categories[1].name"
    message = codes["duplicate_category_name"][0].message
    assert "id 1 (1 annotations)" in message and "id 2 (1 annotations)" in message


def test_unused_category_repeating_a_used_name_is_dropped_with_one_note(basic):
    """Roboflow writes the project name as an unused category 0; a class of the same name is the one in use."""
    basic.data["categories"].insert(0, {"id": 0, "name": "cat", "supercategory": "none"})
    for _ in range(30):
        basic.annotation(1, 1, bbox=[1, 1, 5, 5])
    report, codes = run(basic)
    assert report.usable and report.num_classes == 1
    assert set(codes) == {"duplicate_category_dropped", "negative_images"}
    assert len(codes["duplicate_category_dropped"]) == 1 and codes["duplicate_category_dropped"][0].path == "categories[0]"
    cleaned = json.loads(Path(report.outputs["cleaned"]).read_text())
    assert [c["id"] for c in cleaned["categories"]] == [1]


def test_duplicate_annotation_ids_are_renumbered(basic):
    basic.annotation(2, 1, bbox=[5, 5, 10, 10])
    basic.data["annotations"][-1]["id"] = 1
    report, codes = run(basic)
    assert report.usable and report.repairs["annotation_ids_renumbered"] == 1
    assert codes["duplicate_annotation_id"][0].path == "annotations[1].id"
    ids = [a["id"] for a in cleaned(report)["annotations"]]
    assert sorted(ids) == [1, 2]


def test_unknown_category_and_image_ids_are_errors(basic):
    basic.annotation(1, 7, bbox=[1, 1, 5, 5])
    basic.annotation(9, 1, bbox=[1, 1, 5, 5])
    report, codes = run(basic)
    assert not report.usable
    assert codes["unknown_category_id"][0].path == "annotations[1].category_id"
    assert codes["unknown_image_id"][0].path == "annotations[2].image_id"


def test_unused_category_is_left_out_unless_kept(basic):
    basic.category(5, "bird")
    report, codes = run(basic)
    assert report.num_classes == 1 and codes["category_unused"][0].severity.value == "warning"
    kept, codes = run(basic, keep_empty_classes=True, output_dir=basic.root / "kept")
    assert kept.num_classes == 2 and codes["category_unused"][0].severity.value == "info"
    mode_config = json.loads(Path(kept.outputs["mode_config"]).read_text())
    assert mode_config["class_mapping"] == {"0": "cat", "1": "bird"}
    assert mode_config["category_ids"] == {"0": 1, "1": 5}


def test_class_mapping_is_contiguous_in_category_id_order(coco):
    for cid, name in ((7, "zebra"), (0, "ant"), (3, "bee")):
        coco.category(cid, name)
    coco.image(1)
    for cid in (7, 0, 3):
        coco.annotation(1, cid, bbox=[1, 1, 5, 5])
    report, _ = run(coco)
    mode_config = json.loads(Path(report.outputs["mode_config"]).read_text())
    assert mode_config["class_mapping"] == {"0": "ant", "1": "bee", "2": "zebra"}
    assert mode_config["num_classes"] == 3


def test_missing_and_unreadable_images_are_errors(basic):
    basic.image(3, write=False)
    basic.image(4)
    (basic.root / "images" / "img_4.png").write_bytes(b"not an image")
    report, codes = run(basic)
    assert not report.usable
    assert codes["image_missing"][0].path == "images[2].file_name"
    assert codes["image_unreadable"][0].path == "images[3].file_name"


def test_unreadable_images_are_errors_after_ultralytics_patches_pil(basic, monkeypatch):
    """Importing ultralytics makes Image.open retry unknown files with pi-heif, raising ImportError when it is absent."""
    from PIL import Image

    def patched_open(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", patched_open)
    report, codes = run(basic)
    assert not report.usable
    assert len(codes["image_unreadable"]) == 1  # one cause, one finding naming every image
    assert all(f"images[{i}].file_name" in codes["image_unreadable"][0].message for i in range(len(basic.data["images"])))


def test_image_size_mismatch_is_an_error(basic):
    basic.image(3, width=100, height=80, file_size=(120, 80))
    report, codes = run(basic)
    assert not report.usable
    assert "JSON says 100x80" in codes["image_size_mismatch"][0].message
    assert run(basic, image_check="none", output_dir=basic.root / "trusted")[0].usable


def test_full_image_check_catches_truncated_files(basic):
    import numpy as np
    from PIL import Image

    basic.image(3, file_name="noise.jpg", write=False)
    path = basic.root / "images" / "noise.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert run(basic, image_check="header")[0].usable
    report, codes = run(basic, image_check="full", output_dir=basic.root / "full")
    assert not report.usable and "image_unreadable" in codes


def test_missing_image_size_is_read_from_the_file(basic):
    del basic.data["images"][1]["width"]
    report, codes = run(basic)
    assert report.usable and "image_size_filled" in codes
    assert cleaned(report)["images"][1]["width"] == 100


def test_file_name_escaping_the_image_root_is_an_error(basic):
    basic.image(3, file_name="../outside.png", write=False)
    basic.image(4, file_name="/etc/passwd", write=False)
    report, codes = run(basic)
    assert not report.usable
    assert [f.places for f in codes["file_name_escapes_root"]] == [["images[2].file_name", "images[3].file_name"]]


def test_file_name_may_hold_subfolders(basic):
    basic.image(3, file_name="sub/dir/img.png")
    basic.annotation(3, 1, bbox=[1, 1, 5, 5])
    report, _ = run(basic)
    assert report.usable


@pytest.mark.parametrize("bbox", [[10, 10, 0, 5], [10, 10, 5, -1]])
def test_degenerate_boxes_are_dropped(basic, bbox):
    basic.annotation(1, 1, bbox=bbox)
    report, codes = run(basic)
    assert report.usable and codes["bbox_degenerate"][0].path == "annotations[1].bbox"
    assert len(cleaned(report)["annotations"]) == 1


def test_nan_boxes_are_dropped_even_in_non_standard_json(basic):
    basic.annotation(1, 1, bbox=[float("nan"), 1, 5, 5])
    path = basic.write(text=json.dumps(basic.data))  # Python writes the NaN literal JSON forbids
    assert "NaN" in path.read_text()
    report = prepare_dataset(path, progress=False)
    codes = {f.code: f for f in report.findings}
    assert report.usable and "non_standard_json" in codes and codes["bbox_not_finite"].path == "annotations[1].bbox"
    assert len(cleaned(report)["annotations"]) == 1


def test_boxes_reaching_outside_are_clipped_and_fully_outside_dropped(basic):
    basic.annotation(1, 1, bbox=[90, 70, 20, 20])
    basic.annotation(1, 1, bbox=[200, 200, 5, 5])
    report, codes = run(basic)
    assert codes["bbox_clipped"][0].path == "annotations[1].bbox"
    assert codes["bbox_outside_image"][0].path == "annotations[2].bbox"
    boxes = [a["bbox"] for a in cleaned(report)["annotations"]]
    assert boxes == [[10, 10, 20, 20], [90.0, 70.0, 10.0, 10.0]]


def test_polygons_with_too_few_points_are_dropped(basic):
    basic.annotation(1, 1, segmentation=[[1, 1, 5, 5]])
    report, codes = run(basic)
    assert codes["polygon_invalid_part"][0].path == "annotations[1].segmentation"
    assert len(cleaned(report)["annotations"]) == 1  # nothing left: neither mask nor box


def test_masks_give_tight_boxes_and_areas(coco):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[0, 0, 99, 79], area=1.0, segmentation=square(10, 20, 30))
    coco.annotation(1, 1, segmentation=[[10, 10, 20, 10, 20, 20, 10, 20], [50, 50, 60, 50, 60, 70, 50, 70]])
    report, codes = run(coco)
    assert codes["bbox_mask_mismatch"][0].path == "annotations[0].bbox"
    first, second = cleaned(report)["annotations"]
    assert first["bbox"] == [10, 20, 30, 30] and first["area"] == 900
    assert second["bbox"] == [10, 10, 50, 60] and second["area"] == 300
    assert report.repairs["boxes_and_areas_from_masks"] == 2


def test_flat_polygon_is_read_as_one_part(basic):
    basic.annotation(1, 1, segmentation=[10, 10, 20, 10, 20, 20])
    report, codes = run(basic)
    assert report.usable and "polygon_not_nested" in codes


def test_rle_checks(basic):
    basic.annotation(1, 1, segmentation={"size": [10, 10], "counts": [100]})  # wrong size for a 100x80 image
    basic.annotation(1, 1, segmentation={"size": [80, 100], "counts": [10, 5]})  # counts do not cover the image
    crowd = basic.annotation(1, 1, iscrowd=1, segmentation={"size": [80, 100], "counts": [85, 10, 7905]})
    report, codes = run(basic)
    assert codes["rle_size_mismatch"][0].path == "annotations[1].segmentation"
    assert codes["rle_invalid_counts"][0].path == "annotations[2].segmentation"
    out = {a["id"]: a for a in cleaned(report)["annotations"]}
    assert out[crowd["id"]]["bbox"] == [1, 5, 1, 10] and out[crowd["id"]]["area"] == 10


def test_unknown_fields_and_top_level_keys_survive_cleaning(basic):
    basic.data["info"] = {"description": "kept"}
    basic.data["licenses"] = [{"id": 1, "name": "CC"}]
    basic.data["annotations"][0]["attributes"] = {"occluded": True}
    basic.data["images"][0]["license"] = 1
    report, _ = run(basic)
    out = cleaned(report)
    assert out["info"] == {"description": "kept"} and out["licenses"] == [{"id": 1, "name": "CC"}]
    assert out["annotations"][0]["attributes"] == {"occluded": True}
    assert out["images"][0]["license"] == 1


def test_unusable_dataset_exits_with_findings_and_removes_stale_outputs(basic):
    report, _ = run(basic)
    mode_config = Path(report.outputs["mode_config"])
    assert mode_config.exists()
    basic.annotation(1, 99, bbox=[1, 1, 2, 2])
    report, _ = run(basic)
    assert not report.usable and not mode_config.exists()
    saved = json.loads((Path(report.output_dir) / "report.json").read_text())
    assert saved["usable"] is False and saved["findings"][0]["code"] == "unknown_category_id"


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "invalid JSON at line 1"), ("[]", "not a JSON object"), ('{"images": []}', "missing top-level key"),
     ('{"images": 3, "categories": []}', "'images' is not a list"), ("", "empty")],
)
def test_broken_files_raise_one_clear_error(coco, text, message):
    path = coco.write(text=text)
    with pytest.raises(DatasetError) as error:
        prepare_dataset(path, progress=False)
    assert message in str(error.value) and str(path) in str(error.value)


def test_image_root_is_found_beside_the_json_or_given(coco, tmp_path):
    coco.category(1, "cat")
    coco.image(1)
    coco.annotation(1, 1, bbox=[1, 1, 5, 5])
    report, _ = run(coco)
    assert Path(report.images_root) == coco.root / "images"
    moved = tmp_path / "elsewhere"
    (coco.root / "images").rename(moved)
    assert not run(coco)[0].usable
    assert run(coco, images_dir=moved)[0].usable
    with pytest.raises(DatasetError, match="image folder not found"):
        prepare_dataset(coco.write(), images_dir=tmp_path / "nope", progress=False)


def test_area_falls_back_to_box_size_for_boxes(basic):
    basic.annotation(2, 1, bbox=[0, 0, 4, 5], area=-1)
    report, _ = run(basic)
    assert cleaned(report)["annotations"][1]["area"] == 20


def test_sub_pixel_overflow_is_clipped_silently(basic):
    basic.annotation(1, 1, bbox=[90, 70, 10.4, 10.4])
    report, codes = run(basic)
    assert "bbox_clipped" not in codes
    assert cleaned(report)["annotations"][1]["bbox"] == [90, 70, 10, 10]


def test_cleaned_copy_holds_repaired_segmentations(basic):
    basic.annotation(1, 1, segmentation=[10, 10, 20, 10, 20, 20])                       # flat polygon
    basic.annotation(1, 1, segmentation=[[1, 1, 2, 2], [30, 30, 40, 30, 40, 40]])      # one part too short
    basic.annotation(1, 1, bbox=[5, 5, 10, 10], segmentation={"size": [10, 10], "counts": [100]})  # wrong size
    report, _ = run(basic)
    by_id = {a["id"]: a for a in cleaned(report)["annotations"]}
    assert by_id[2]["segmentation"] == [[10, 10, 20, 10, 20, 20]]
    assert by_id[3]["segmentation"] == [[30, 30, 40, 30, 40, 40]] and by_id[3]["bbox"] == [30, 30, 10, 10]
    assert by_id[4]["segmentation"] == [] and by_id[4]["bbox"] == [5, 5, 10, 10]  # kept as a box, bad mask removed
    from mlcore.data.coco_dataset import CocoDataset

    masks = CocoDataset(report.outputs["cleaned"], images_dir=report.images_root)[0].masks()
    assert masks.shape == (4, 80, 100) and masks[3].sum() == 0


def test_clipped_box_gets_the_clipped_area(basic):
    basic.annotation(1, 1, bbox=[90, 70, 20, 20], area=400)
    report, _ = run(basic)
    assert cleaned(report)["annotations"][1]["area"] == 100


def test_float_sizes_and_boolean_crowd_flags_are_accepted(basic):
    basic.data["images"][0]["width"] = 100.0
    basic.annotation(1, 1, bbox=[1, 1, 5, 5], iscrowd=False)
    report, codes = run(basic)
    assert report.usable and "schema" not in codes
    basic.data["images"][0]["width"] = 100.5
    report, codes = run(basic, image_check="none", output_dir=basic.root / "o2")
    assert not report.usable and "width=100.5, height=80" in codes["image_size_missing"][0].message


def test_crowd_only_category_is_named_as_such(basic):
    basic.category(2, "crowd")
    basic.annotation(1, 2, iscrowd=1, segmentation={"size": [80, 100], "counts": [85, 10, 7905]})
    _, codes = run(basic)
    assert "only crowd regions" in codes["category_unused"][0].message


def test_a_rerun_removes_outputs_the_new_run_does_not_write(basic):
    report, _ = run(basic, split="train:0.5,val:0.5")
    split_file = Path(report.outputs["train"])
    assert split_file.is_file()
    run(basic)
    assert not split_file.exists()
    basic.write(text="{broken")
    with pytest.raises(DatasetError):
        prepare_dataset(basic.root / "annotations.json", progress=False)
    assert not (Path(report.output_dir) / ".mode_config.json").exists()
    assert not (Path(report.output_dir) / "report.json").exists()


def test_paths_in_outputs_are_absolute(basic, monkeypatch):
    monkeypatch.chdir(basic.root)
    basic.write()
    report = prepare_dataset("annotations.json", output_dir="out", progress=False)
    mode_config = json.loads((basic.root / "out" / ".mode_config.json").read_text())
    assert all(Path(mode_config[key]).is_absolute() for key in ("dataset", "source_dataset", "images_root"))
    assert Path(report.output_dir).is_absolute()


@pytest.mark.parametrize("bad", ["../up:0.5,val:0.5", "report:0.5,val:0.5", "a/b:1,c:1", "cleaned:1,mode_config:1"])
def test_split_names_must_be_plain_file_names(basic, bad):
    with pytest.raises(DatasetError, match="cannot name a split"):
        prepare_dataset(basic.write(), split=bad, progress=False)


def test_mode_config_hashes_the_file_it_points_to(basic):
    report, _ = run(basic)
    mode_config = json.loads(Path(report.outputs["mode_config"]).read_text())
    assert mode_config["dataset"] == report.outputs["cleaned"]
    assert mode_config["dataset_sha256"] == hashlib.sha256(Path(report.outputs["cleaned"]).read_bytes()).hexdigest()
    assert mode_config["source_sha256"] == report.dataset_sha256
