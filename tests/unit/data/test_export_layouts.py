"""Labelling-tool export folders are recognised, and their splits merged into one COCO file that keeps them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mlcore.data.export_layouts import MERGED_FILE_NAME, ExportLayout, MergedExport, merge_export, recognise_export
from mlcore.errors import DatasetError

from .test_shared_datasets import tree_digest

FRUITS = [{"id": 0, "name": "fruits", "supercategory": "none"}, {"id": 1, "name": "apple", "supercategory": "fruits"},
          {"id": 2, "name": "pear", "supercategory": "fruits"}]


def write_part(annotation_file: Path, image_folder: Path, names: list[str], categories: list[dict],
               file_name_prefix: str = "", first_id: int = 1) -> dict:
    """A small COCO file with one box per image (category cycling through CATEGORIES) and real image files."""
    data: dict = {"info": {"description": annotation_file.name}, "images": [], "annotations": [],
                  "categories": categories}
    for index, name in enumerate(names):
        path = image_folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 12), (10 * index, 100, 200)).save(path)
        image_id = first_id + index
        data["images"].append({"id": image_id, "file_name": file_name_prefix + name, "width": 16, "height": 12,
                               "extra": {"source": str(index)}})
        category = categories[index % len(categories)]
        data["annotations"].append({"id": 100 + index, "image_id": image_id, "category_id": category["id"],
                                    "bbox": [index, 1, 4 + index, 5], "area": 20.0, "iscrowd": 0,
                                    "attributes": {"occluded": index % 2 == 0}})
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    annotation_file.write_text(json.dumps(data))
    return data


def roboflow_export(root: Path) -> Path:
    for split, names in {"train": ["a.jpg", "b.jpg", "c.jpg"], "valid": ["d.jpg", "e.jpg"], "test": ["f.jpg"]}.items():
        write_part(root / split / "_annotations.coco.json", root / split, names, FRUITS)
    (root / "README.roboflow.txt").write_text("exported from roboflow")
    return root


def coco2017_export(root: Path) -> Path:
    animals = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    write_part(root / "annotations/instances_train2017.json", root / "train2017", ["000001.jpg", "000002.jpg"], animals)
    write_part(root / "annotations/instances_val2017.json", root / "val2017", ["000003.jpg"], animals, first_id=3)
    # Another task on the same images: its file names point nowhere, so reading it would show.
    keypoints = {"images": [{"id": 9, "file_name": "missing.jpg"}], "annotations": [],
                 "categories": [{"id": 1, "name": "person", "keypoints": []}]}
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(keypoints))
    return root



def boxes_by_file(images: list[dict], annotations: list[dict], categories: list[dict], root) -> dict:
    """Each image file (resolved) -> its sorted (category name, bbox) pairs: what must survive a merge."""
    names = {category["id"]: category["name"] for category in categories}
    files = {image["id"]: (root(image) / image["file_name"]).resolve() for image in images}
    found: dict = {path: [] for path in files.values()}
    for annotation in annotations:
        found[files[annotation["image_id"]]].append((names[annotation["category_id"]], annotation["bbox"]))
    return {path: sorted(pairs) for path, pairs in found.items()}


def check_merge(layout: ExportLayout, merged: MergedExport) -> dict:
    """The merge promises of the module, checked against the parts' own files; returns the merged COCO dict."""
    data = json.loads(merged.annotation_file.read_text())
    assert all((merged.images_root / image["file_name"]).is_file() for image in data["images"])
    assert [image["id"] for image in data["images"]] == list(range(1, len(data["images"]) + 1))
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    expected: dict = {}
    counts: Counter = Counter()
    for part in layout.parts:
        source = json.loads(part.annotation_file.read_text())
        expected.update(boxes_by_file(source["images"], source["annotations"], source["categories"],
                                      lambda image, part=part: part.images_dir))
        if part.split is not None:
            counts[part.split] += len(source["images"])
    assert boxes_by_file(data["images"], data["annotations"], data["categories"],
                         lambda image: merged.images_root) == expected
    assert Counter(merged.split_of_image.values()) == counts
    assert len({category["name"] for category in data["categories"]}) == len(data["categories"])
    return data


def test_roboflow_splits_are_recognised_and_merged(tmp_path):
    export = roboflow_export(tmp_path / "export")
    before = tree_digest(export)
    layout = recognise_export(export)
    assert layout.kind == "roboflow"
    assert [(part.split, part.images_dir) for part in layout.parts] == [
        ("train", export / "train"), ("val", export / "valid"), ("test", export / "test")]
    merged = merge_export(layout, tmp_path / "out")
    data = check_merge(layout, merged)
    assert merged.annotation_file == tmp_path / "out" / MERGED_FILE_NAME
    assert merged.images_root == export
    assert data["images"][0]["file_name"] == "train/a.jpg" and data["images"][3]["file_name"] == "valid/d.jpg"
    assert data["categories"] == FRUITS  # shared by every part: kept as written, once
    assert data["images"][0]["extra"] == {"source": "0"} and data["annotations"][0]["attributes"] == {"occluded": True}
    assert data["info"] == {"description": "_annotations.coco.json"}
    assert "Roboflow" in merged.notes[0]
    assert tree_digest(export) == before


def test_cvat_single_subset_has_no_split(tmp_path):
    export = tmp_path / "cvat"
    write_part(export / "annotations/instances_default.json", export / "images", ["x.jpg", "y.jpg"],
               [{"id": 1, "name": "car", "supercategory": ""}])
    layout = recognise_export(export)
    assert layout.kind == "cvat" and layout.splits == []
    assert [(part.split, part.images_dir) for part in layout.parts] == [(None, export / "images")]
    merged = merge_export(layout, tmp_path / "out")
    check_merge(layout, merged)
    assert merged.split_of_image == {}


def test_cvat_subsets_with_bare_names_in_images_subset_folders(tmp_path):
    export = tmp_path / "cvat"
    write_part(export / "annotations/instances_Train.json", export / "images/Train", ["a.jpg", "b.jpg"],
               [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    # Same bare name as in Train, categories in another order plus one only this subset has.
    write_part(export / "annotations/instances_Validation.json", export / "images/Validation",
               ["a.jpg", "c.jpg", "d.jpg"],
               [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 7, "name": "bird"}])
    before = tree_digest(export)
    layout = recognise_export(export)
    assert layout.kind == "cvat"
    assert [(part.split, part.images_dir) for part in layout.parts] == [
        ("train", export / "images/Train"), ("val", export / "images/Validation")]
    merged = merge_export(layout, tmp_path / "out")
    data = check_merge(layout, merged)
    assert merged.images_root == export / "images"
    assert [image["file_name"] for image in data["images"]] == [
        "Train/a.jpg", "Train/b.jpg", "Validation/a.jpg", "Validation/c.jpg", "Validation/d.jpg"]
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "cat"), (2, "dog"), (3, "bird")]
    assert dict(Counter(merged.split_of_image.values())) == {"train": 2, "val": 3}
    assert tree_digest(export) == before


def test_label_studio_file_names_keep_their_images_prefix(tmp_path):
    export = tmp_path / "dataset"
    write_part(export / "result.json", export, ["images/a.jpg", "images/b.jpg"],
               [{"id": 0, "name": "carros"}, {"id": 1, "name": "motos"}])
    layout = recognise_export(export)
    assert layout.kind == "label_studio"
    assert [(part.split, part.images_dir) for part in layout.parts] == [(None, export)]
    merged = merge_export(layout, tmp_path / "out")
    data = check_merge(layout, merged)
    assert [image["file_name"] for image in data["images"]] == ["images/a.jpg", "images/b.jpg"]
    assert [c["id"] for c in data["categories"]] == [0, 1]


def test_coco2017_reads_instances_files_only(tmp_path):
    export = coco2017_export(tmp_path / "coco")
    before = tree_digest(export)
    layout = recognise_export(export)
    assert layout.kind == "coco"
    assert [(part.split, part.annotation_file.name, part.images_dir) for part in layout.parts] == [
        ("train", "instances_train2017.json", export / "train2017"),
        ("val", "instances_val2017.json", export / "val2017")]
    merged = merge_export(layout, tmp_path / "out")
    data = check_merge(layout, merged)
    assert [image["file_name"] for image in data["images"]] == [
        "train2017/000001.jpg", "train2017/000002.jpg", "val2017/000003.jpg"]
    assert merged.split_of_image == {1: "train", 2: "train", 3: "val"}
    assert tree_digest(export) == before


def test_single_coco_json_beside_other_json(tmp_path):
    folder = tmp_path / "plain"
    write_part(folder / "labels.json", folder / "images", ["a.png"], [{"id": 1, "name": "thing"}])
    (folder / "settings.json").write_text(json.dumps({"threshold": 0.5}))
    layout = recognise_export(folder)
    assert layout.kind == "single_json"
    assert [(part.split, part.annotation_file.name, part.images_dir) for part in layout.parts] == [
        (None, "labels.json", folder / "images")]


def test_unrecognised_folder_lists_the_layouts_looked_for(tmp_path):
    folder = tmp_path / "stuff"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations/person_keypoints_val2017.json").write_text(json.dumps({"images": []}))
    (folder / "notes.json").write_text("[1, 2]")
    with pytest.raises(DatasetError) as error:
        recognise_export(folder)
    message = error.value.message
    for layout in ("Roboflow:", "CVAT:", "Label Studio:", "COCO:"):
        assert sum(line.strip().startswith(f"- {layout}") for line in message.splitlines()) == 1
    assert "person_keypoints_val2017.json" in message
    assert error.value.where == str(folder) and "--data path/to/annotations.json" in error.value.fix


def test_categories_with_other_ids_in_a_later_part_follow_the_first(tmp_path):
    export = tmp_path / "export"
    write_part(export / "train/_annotations.coco.json", export / "train", ["a.jpg", "b.jpg"],
               [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    write_part(export / "valid/_annotations.coco.json", export / "valid", ["c.jpg", "d.jpg", "e.jpg"],
               [{"id": 5, "name": "dog"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "fox"}])
    layout = recognise_export(export)
    merged = merge_export(layout, tmp_path / "out")
    data = check_merge(layout, merged)
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "cat"), (2, "dog"), (3, "fox")]
    assert any("'dog' has id 5" in note for note in merged.notes)


@pytest.mark.parametrize(("relative", "kind"), [("real_exports/cvat_cars", "cvat"),
                                               ("real_exports/labelstudio_cars/dataset", "label_studio"),
                                               ("coco128_coco", "coco")])
def test_real_exports_are_recognised(shared_datasets, tmp_path, relative, kind):
    folder = shared_datasets / relative
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")  # said, not passed silently
    layout = recognise_export(folder)
    assert layout.kind == kind, relative
    check_merge(layout, merge_export(layout, tmp_path / "merged"))
