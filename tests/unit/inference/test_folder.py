"""Folder inference: an overlay per image and a COCO results file pycocotools loads against the dataset."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcore.errors import ConfigError, DatasetError
from mlcore.inference import (Detections, ONNXEngine, PyTorchEngine, draw_detections, image_ids_from_annotations,
                              infer_folder, result_records)
from mlcore.inference.overlay import class_color
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


def test_pipelined_batches_write_what_one_image_at_a_time_writes(seg_model: Exported, demo_images: list[Path],
                                                                  tmp_path: Path) -> None:
    """Loading, inference and writing overlap across threads; every output file is still the sequential one."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index, path in enumerate(demo_images):
        shutil.copy(path, folder / path.name)
        if index == 2:
            (folder / f"{path.stem}_broken.jpg").write_bytes(b"not an image")  # a skip inside a batch
    engine = ONNXEngine(seg_model.onnx)  # batch fixed at 1: batched and single calls give the same numbers
    sequential = infer_folder(engine, folder, tmp_path / "sequential", conf=CONF, batch_size=1, workers=1)
    pipelined = infer_folder(engine, folder, tmp_path / "pipelined", conf=CONF, batch_size=3, workers=3)
    assert sequential.num_detections > 0 and len(sequential.skipped) == 1
    assert pipelined.to_dict() == {**sequential.to_dict(), "output_dir": str(tmp_path / "pipelined"),
                                   "overlays_dir": str(tmp_path / "pipelined" / "overlays"),
                                   "predictions_file": str(tmp_path / "pipelined" / "predictions.json")}
    for name in ("predictions.json", "overlays"):
        first, second = tmp_path / "sequential" / name, tmp_path / "pipelined" / name
        files = sorted(first.iterdir()) if first.is_dir() else [first]
        for path in files:
            assert path.read_bytes() == (second / path.name if first.is_dir() else second).read_bytes(), path.name
    # and what a plain loop over engine.predict gives
    records = []
    for image in sequential.images:
        detections = engine.predict(folder / image["file_name"], conf=CONF)[0]
        records += result_records(image["id"], image["file_name"], detections, {0: 1, 1: 2, 2: 3})
    assert json.loads((tmp_path / "pipelined" / "predictions.json").read_text()) == json.loads(json.dumps(records))


def test_overlays_blend_masks_as_the_whole_image_blend_does(seg_model: Exported, demo_images: list[Path]) -> None:
    """draw_detections tints only where each mask is; the pixels are those of blending over the whole image."""
    engine = ONNXEngine(seg_model.onnx)
    rgb = np.asarray(Image.open(demo_images[0]).convert("RGB"))
    detections = engine.predict(rgb, conf=CONF)[0]
    assert len(detections) >= 2 and detections.masks is not None
    drawn = np.asarray(draw_detections(rgb, detections, engine.class_names), dtype=int)
    canvas = rgb.astype(np.float32)
    for index in reversed(range(len(detections))):
        mask = detections.masks[index].numpy()
        color = np.asarray(class_color(int(detections.class_ids[index])), dtype=np.float32)
        canvas[mask] = canvas[mask] * 0.6 + color * 0.4
    tinted = canvas.round().clip(0, 255).astype(int)
    untouched_by_boxes = ~np.asarray(draw_detections(np.zeros_like(rgb), Detections(
        detections.boxes, detections.scores, detections.class_ids, None, detections.image_size),
        engine.class_names)).any(axis=2)
    assert np.array_equal(drawn[untouched_by_boxes], tinted[untouched_by_boxes])
    plain = Detections(detections.boxes[:0], detections.scores[:0], detections.class_ids[:0],
                       detections.masks[:0], detections.image_size)
    assert np.array_equal(np.asarray(draw_detections(rgb, plain, engine.class_names)), rgb)
