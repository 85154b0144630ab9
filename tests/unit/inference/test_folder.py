"""Folder inference: an overlay per image and a COCO results file pycocotools loads against the dataset."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcore.errors import ConfigError, DatasetError
from mlcore.inference import ONNXEngine, PyTorchEngine, image_ids_from_annotations, infer_folder
from tests.unit.inference.conftest import Exported

CONF = 0.005


def test_overlays_and_coco_results_for_a_folder(seg_model: Exported, demo_annotations: Path,
                                                demo_images: list[Path], tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    engine = ONNXEngine(seg_model.onnx)
    dataset = json.loads(demo_annotations.read_text())
    summary = infer_folder(engine, demo_images[0].parent, tmp_path / "out", conf=CONF,
                           category_ids={"0": 1, "1": 2, "2": 3}, image_ids=image_ids_from_annotations(dataset))
    overlays = sorted((tmp_path / "out" / "overlays").iterdir())
    assert [path.name for path in overlays] == [path.name for path in demo_images]
    for overlay, original in zip(overlays, demo_images):
        with Image.open(overlay) as drawn, Image.open(original) as source:
            assert drawn.size == source.size and drawn.format == "JPEG"
            different = np.abs(np.asarray(drawn, dtype=int) - np.asarray(source, dtype=int)).max() > 40
        assert different == bool(summary.images[overlays.index(overlay)]["detections"])
    results_file = tmp_path / "out" / "predictions.json"
    results = json.loads(results_file.read_text())
    assert summary.num_images == len(demo_images) and summary.num_detections == len(results) > 0
    assert {result["file_name"] for result in results} <= {path.name for path in demo_images}
    assert all("segmentation" in result for result in results)
    assert json.loads((tmp_path / "out" / "inference.json").read_text())["categories"][0] == {"id": 1,
                                                                                              "name": "square"}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(demo_annotations))
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), iouType=iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            assert len(evaluation.stats) == 12


def test_without_a_dataset_ids_are_file_order_and_class_index_plus_one(detect_model: Exported,
                                                                         demo_images: list[Path],
                                                                         tmp_path: Path) -> None:
    summary = infer_folder(PyTorchEngine(detect_model.pt), demo_images[0].parent, tmp_path, conf=CONF)
    assert [(image["id"], image["file_name"]) for image in summary.images] == [
        (number, path.name) for number, path in enumerate(demo_images, start=1)]
    assert [category["id"] for category in summary.categories] == [1, 2, 3]
    results = json.loads((tmp_path / "predictions.json").read_text())
    assert results and {result["category_id"] for result in results} <= {1, 2, 3}
    assert not any("segmentation" in result for result in results)


def test_one_file_and_an_unreadable_one(detect_model: Exported, demo_images: list[Path], tmp_path: Path) -> None:
    engine = ONNXEngine(detect_model.onnx)
    single = infer_folder(engine, demo_images[0], tmp_path / "one", conf=CONF)
    assert single.num_images == 1 and (tmp_path / "one" / "overlays" / demo_images[0].name).is_file()
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.open(demo_images[0]).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    summary = infer_folder(engine, folder, tmp_path / "mixed_out", conf=CONF)
    assert [image["file_name"] for image in summary.images] == ["good.png"]
    assert [skipped["file_name"] for skipped in summary.skipped] == ["broken.jpg"]
    assert sorted(path.name for path in (tmp_path / "mixed_out" / "overlays").iterdir()) == ["good.png"]


def test_bad_sources_and_ids_are_user_errors(detect_model: Exported, demo_images: list[Path], tmp_path: Path) -> None:
    engine = ONNXEngine(detect_model.onnx)
    with pytest.raises(DatasetError, match="no such image or folder"):
        infer_folder(engine, tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        infer_folder(engine, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConfigError, match="classes \\[2\\]"):
        infer_folder(engine, demo_images[0], tmp_path / "out", category_ids={0: 1, 1: 2})
    with pytest.raises(ConfigError, match="have no id"):
        infer_folder(engine, demo_images[0], tmp_path / "out", image_ids={"other.jpg": 1})
