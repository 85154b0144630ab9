"""optimize_model: DIR/model.onnx, the quantized model, the gate's decision and export.json's documented fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcore.config.schemas.optimization import QuantizationConfig
from mlcore.errors import DatasetError, ModelError
from mlcore.optimization import optimize_model, tensorrt_available

from .conftest import IMGSZ, Demo

REPORT_KEYS = {"created", "source", "formats", "files", "onnx", "parity", "quantization", "accuracy_gate",
               "tensorrt", "recommended", "recommended_reason"}


def test_int8_with_gate_writes_the_files_and_report(detector_pt: Path, demo: Demo, tmp_path: Path) -> None:
    config = QuantizationConfig.model_validate({"calibration": {"num_images": 4}, "accuracy_gate": {"max_drop": 100}})
    out = tmp_path / "export"
    result = optimize_model(detector_pt, out, quantize="int8", calibration_data=demo.images,
                            val_data=demo.annotations, config=config)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx"]
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert set(report) == REPORT_KEYS
    assert report["formats"] == ["onnx", "int8_static"]
    sizes = {entry["name"]: entry["size_bytes"] for entry in report["files"]}
    assert sizes == {"model.onnx": (out / "model.onnx").stat().st_size,
                     "model.int8.onnx": (out / "model.int8.onnx").stat().st_size}
    assert sizes["model.int8.onnx"] < sizes["model.onnx"]
    assert report["source"]["imgsz"] == IMGSZ  # read from the checkpoint
    assert report["onnx"]["opset"] == 17 and report["onnx"]["path"] == "model.onnx"
    assert report["parity"]["inputs"] == "images" and report["parity"]["images"] > 0
    assert report["parity"]["relative"]["output0"] < 1e-4  # fp32 ONNX Runtime vs PyTorch: float rounding only
    assert report["quantization"]["method"] == "int8_static"
    assert report["quantization"]["settings"]["calibration_images"] == 4
    gate = report["accuracy_gate"]
    assert gate["evaluated"] is True and gate["passed"] is True and gate["threshold"] == 100
    assert {"metric", "float_value", "quantized_value", "drop", "kept", "reason"} <= set(gate)
    assert report["recommended"] == "model.int8.onnx" == result.recommended.name
    assert report["tensorrt"] is None


def test_without_quantization_only_the_onnx_model_is_written(detector_pt: Path, tmp_path: Path) -> None:
    result = optimize_model(detector_pt, tmp_path, imgsz=64)
    report = json.loads(result.report_path.read_text(encoding="utf-8"))
    assert report["formats"] == ["onnx"] and report["quantization"] is None and report["accuracy_gate"] is None
    assert report["recommended"] == "model.onnx" and report["parity"]["inputs"] == "noise"


def test_gate_without_validation_data_is_reported_as_skipped(detector_pt: Path, demo: Demo, tmp_path: Path) -> None:
    result = optimize_model(detector_pt, tmp_path, quantize="int8-dynamic", imgsz=64)
    report = json.loads(result.report_path.read_text(encoding="utf-8"))
    assert report["accuracy_gate"]["evaluated"] is False and "--val-data" in report["accuracy_gate"]["reason"]
    assert report["recommended"] == "model.int8-dynamic.onnx"


def test_static_int8_without_calibration_data_is_a_dataset_error(detector_pt: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="calibration"):
        optimize_model(detector_pt, tmp_path / "out", quantize="int8")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_engine_without_tensorrt_fails_before_exporting(detector_pt: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="TensorRT"):
        optimize_model(detector_pt, tmp_path / "out", formats=("onnx", "engine"))
    assert not (tmp_path / "out").exists()
