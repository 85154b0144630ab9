"""The accuracy gate: a quantized model that scores more than max_drop points below the float one is not shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcore.config.schemas.optimization import AccuracyGate
from mlcore.errors import ModelError
from mlcore.optimization import accuracy_gate, decide, evaluate_model_file
from mlcore.students import Student

from .conftest import CLASS_NAMES, IMGSZ, Demo

FLOAT, QUANTIZED = Path("model.onnx"), Path("model.int8.onnx")


def test_drop_within_threshold_keeps_the_quantized_model() -> None:
    decision = decide("map50_95", 50.0, 49.5, float_path=FLOAT, quantized_path=QUANTIZED, max_drop=1.0)
    assert decision.passed and decision.kept_path == QUANTIZED and decision.kept_quantized
    assert decision.drop == pytest.approx(0.5) and decision.reason.startswith("passed")
    decision.enforce()  # nothing to raise


@pytest.mark.parametrize(("on_fail", "kept"), [("keep_higher_precision", FLOAT), ("warn", QUANTIZED),
                                                ("fail", FLOAT)])
def test_a_larger_drop_follows_on_fail(on_fail: str, kept: Path) -> None:
    decision = decide("map50_95", 50.0, 47.0, float_path=FLOAT, quantized_path=QUANTIZED, max_drop=1.0,
                      on_fail=on_fail)
    assert not decision.passed and decision.kept_path == kept and decision.drop == pytest.approx(3.0)
    assert "3.00 points" in decision.reason and on_fail in decision.reason
    if on_fail == "fail":
        with pytest.raises(ModelError, match="failed"):
            decision.enforce()
    else:
        decision.enforce()
    record = decision.to_json()
    assert record["kept"] == kept.name and record["passed"] is False and record["threshold"] == 1.0


@pytest.fixture(scope="module")
def self_labelled_split(detector_pt: Path, demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo images labelled with the float model's own top detections.

    A random-weight model scores ~0 on the real shapes for float and int8 alike; against its own predictions the
    float model scores high and any shift int8 makes to boxes or ranking is a real, measurable drop.
    """
    student = Student.load(detector_pt)
    images, annotations = [], []
    for image_id, path in enumerate(demo.image_paths(), start=1):
        (prediction,) = student.predict(str(path), imgsz=IMGSZ, conf=0.05, max_det=5)
        height, width = prediction.image_size
        images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
        for (x1, y1, x2, y2), class_id in zip(prediction.boxes.tolist(), prediction.class_ids.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": class_id + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    assert annotations, "the seeded student should detect something at conf 0.05"
    target = tmp_path_factory.mktemp("selflabelled") / "val.json"
    target.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": index + 1, "name": name} for index, name in enumerate(CLASS_NAMES)]}), encoding="utf-8")
    return target


def test_gate_with_threshold_zero_keeps_fp32_when_int8_scores_lower(detector_onnx, detector_int8, demo: Demo,
                                                                    self_labelled_split: Path) -> None:
    decision = accuracy_gate(detector_onnx.path, detector_int8.path, self_labelled_split, val_images=demo.images,
                             gate=AccuracyGate(max_drop=0.0))
    assert decision.drop > 0, "int8 should lose something against the float model's own detections"
    assert not decision.passed and decision.kept_path == detector_onnx.path
    assert "keep_higher_precision" in decision.reason and decision.float_value > decision.quantized_value


def test_gate_passes_when_the_drop_is_within_the_threshold(detector_onnx, detector_int8, demo: Demo,
                                                           self_labelled_split: Path) -> None:
    scores = {path: evaluate_model_file(path, self_labelled_split, val_images=demo.images)["map50_95"]
              for path in (detector_onnx.path, detector_int8.path)}
    drop = 100 * (scores[detector_onnx.path] - scores[detector_int8.path])
    decision = accuracy_gate(detector_onnx.path, detector_int8.path, gate=AccuracyGate(max_drop=max(drop, 0) + 0.5),
                             evaluate=lambda path: {"map50_95": scores[path]})
    assert decision.passed and decision.kept_path == detector_int8.path
    assert decision.drop == pytest.approx(drop)
