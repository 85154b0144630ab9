"""INT8 (dynamic, static QDQ) and FP16 models run in ONNX Runtime, are smaller, keep metadata and the float tail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mlcore.errors import DatasetError
from mlcore.optimization import (
    CalibrationReader,
    calibration_images,
    convert_to_fp16,
    exclusion_nodes,
    quantize_int8_dynamic,
)
from mlcore.optimization.onnx_export import onnx_metadata
from mlcore.students import Student
from tests.unit.relocated import relocate

from .conftest import IMGSZ, Demo


def _run(path: Path, pixels: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": pixels})


def _pixels(demo: Demo, count: int = 2) -> np.ndarray:
    reader = CalibrationReader(demo.image_paths()[-count:], imgsz=IMGSZ, batch_size=count)
    return reader.get_next()["images"]


def test_static_int8_is_qdq_smaller_runs_and_keeps_metadata(detector_onnx, detector_int8, demo: Demo) -> None:
    model = onnx.load(str(detector_int8.path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert detector_int8.size_bytes < 0.5 * detector_onnx.size_bytes
    assert onnx_metadata(detector_int8.path)["names"] == onnx_metadata(detector_onnx.path)["names"]
    assert "int8_static QDQ per_channel=True" in onnx_metadata(detector_int8.path)["mlcore_quantization"]
    pixels = _pixels(demo)
    (quantized,), (reference,) = _run(detector_int8.path, pixels), _run(detector_onnx.path, pixels)
    assert quantized.shape == reference.shape
    # int8 error, measured on this image-dependent student: scores 0.006 mean / 0.08 max (range 0.30-0.68), boxes
    # 0.4 px mean / 8 px max of ~490. The decode tail stayed float: one int8 scale shared by pixel boxes and 0-1 scores
    # would move every score by about imgsz / 255 ~ 0.5.
    score_error, box_error = np.abs(quantized[:, 4:] - reference[:, 4:]), np.abs(quantized[:, :4] - reference[:, :4])
    assert score_error.mean() < 0.02 and score_error.max() < 0.2
    assert box_error.mean() < 2.0 and box_error.max() < 0.05 * np.abs(reference[:, :4]).max()
    assert np.corrcoef(quantized[:, 4:].ravel(), reference[:, 4:].ravel())[0, 1] > 0.9


def test_static_int8_keeps_the_decode_constants_in_float(make_student, demo: Demo, tmp_path: Path) -> None:
    """A student blind to its input has box logits ~0 (vanishing random features), so any int8 box error comes from
    the decode's constants: with anchors and strides in float its int8 boxes equal the fp32 ones far below a pixel
    (quantized, strides 8 and 16 read 8.03 and 16.06: boxes 0.4 % too large, 0.94 px here)."""
    from mlcore.optimization import export_to_onnx, quantize_int8_static

    weights = make_student("yolov8", live=False).save(tmp_path / "blind.pt", imgsz=IMGSZ)
    fp32 = export_to_onnx(weights, tmp_path / "blind.onnx", imgsz=IMGSZ, parity_images=demo.image_paths()[:1])
    int8 = quantize_int8_static(fp32.path, tmp_path / "blind.int8.onnx",
                                CalibrationReader.for_model(fp32.path, demo.image_paths()[:6]))
    pixels = _pixels(demo)
    (quantized,), (reference,) = _run(int8.path, pixels), _run(fp32.path, pixels)
    assert np.abs(quantized[:, :4] - reference[:, :4]).max() < 0.05


def _quantized_static(student: Student, demo: Demo, folder: Path) -> tuple[Path, Path]:
    from mlcore.optimization import export_to_onnx, quantize_int8_static

    fp32 = export_to_onnx(student, folder / "model.onnx", imgsz=IMGSZ, parity_images=demo.image_paths()[:1])
    int8 = quantize_int8_static(fp32.path, folder / "model.int8.onnx",
                                CalibrationReader.for_model(fp32.path, demo.image_paths()[:6]))
    return fp32.path, int8.path


def _float_convs(path: Path) -> list[str]:
    """Convs whose weights are float (not fed by a DequantizeLinear): what int8 did not reach."""
    model = onnx.load(str(path))
    dequantized = {output for node in model.graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "Conv" and node.input[1] not in dequantized]


def test_static_int8_quantizes_a_segmenters_prototype_branch(make_student, demo: Demo, tmp_path: Path) -> None:
    """The mask prototypes (three convs at 1/4 scale, ~40 % of a yolov8n-seg) are network, not decode: kept float
    they cost an INT8 segmenter ~1/3 of its time. Only the DFL's fixed 1x1 conv stays float."""
    fp32, int8 = _quantized_static(make_student("yolov8_seg"), demo, tmp_path)
    assert all("/dfl/" in name for name in _float_convs(int8)), _float_convs(int8)
    decode = exclusion_nodes(onnx.load(str(fp32)), "decode")
    assert not any("/proto/" in name and name.endswith("/Conv") for name in decode)
    assert "/model.22/proto/cv3/act/Sigmoid" in decode  # the prototypes' own activation stays float
    pixels = _pixels(demo)
    (_, quantized), (_, reference) = _run(int8, pixels), _run(fp32, pixels)
    assert quantized.shape == reference.shape
    # measured on this random-weight student: correlation 0.93, mean error 0.33 of the mean magnitude (0.95 / 0.26
    # with the branch in float: most of the error comes from the int8 backbone feeding it)
    assert np.corrcoef(quantized.ravel(), reference.ravel())[0, 1] > 0.9
    assert np.abs(quantized - reference).mean() < 0.5 * np.abs(reference).mean()


def test_relu_student_quantizes_without_sigmoids_in_its_body(make_student, demo: Demo, tmp_path: Path) -> None:
    """ReLU folds into the int8 conv; SiLU leaves a Sigmoid and a Mul after each one."""
    student = make_student("yolov8", activation="relu")
    assert student.activation == "relu"
    fp32, int8 = _quantized_static(student, demo, tmp_path)
    model = onnx.load(str(int8))
    decode = set(exclusion_nodes(model, "decode"))
    body_ops = [node.op_type for node in model.graph.node if node.name not in decode]
    assert "Sigmoid" not in body_ops and "Relu" in {node.op_type for node in onnx.load(str(fp32)).graph.node}
    _, silu_int8 = _quantized_static(make_student("yolov8"), demo, tmp_path / "silu")
    silu_ops = [node.op_type for node in onnx.load(str(silu_int8)).graph.node]
    assert silu_ops.count("Sigmoid") > 40  # the control: every SiLU conv of the body
    pixels = _pixels(demo)
    (quantized,), (reference,) = _run(int8, pixels), _run(fp32, pixels)
    # measured: scores 0.05 mean error (their spread is 0.07: random ReLU features are weak), boxes 2.5 % of their
    # mean coordinate; a wrong scale or a dropped activation is off by the whole range. Trained students' int8
    # accuracy is measured in benchmarks/bench_end_to_end.py.
    assert np.abs(quantized[:, 4:] - reference[:, 4:]).mean() < 0.1
    assert np.abs(quantized[:, :4] - reference[:, :4]).mean() < 0.05 * np.abs(reference[:, :4]).mean()


def test_dynamic_int8_is_smaller_and_runs(detector_onnx, demo: Demo, tmp_path: Path) -> None:
    result = quantize_int8_dynamic(detector_onnx.path, tmp_path / "model.int8-dynamic.onnx")
    assert result.method == "int8_dynamic" and result.size_bytes < 0.5 * detector_onnx.size_bytes
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "ConvInteger" in ops or "DynamicQuantizeLinear" in ops
    (output,) = _run(result.path, _pixels(demo))
    assert output.shape[0] == 2 and np.isfinite(output).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8-dynamic.onnx"]


def test_fp16_model_runs_with_float32_io(detector_onnx, demo: Demo, tmp_path: Path) -> None:
    result = convert_to_fp16(detector_onnx.path, tmp_path / "model.fp16.onnx")
    assert result.size_bytes < 0.6 * detector_onnx.size_bytes
    pixels = _pixels(demo)
    (half,), (full,) = _run(result.path, pixels), _run(detector_onnx.path, pixels)
    assert half.dtype == np.float32
    ulp = 2.0 ** -11  # fp16's spacing relative to a value (10-bit mantissa); a few of them, not whole percents
    assert np.abs(half[:, 4:] - full[:, 4:]).max() < 4 * ulp
    assert np.abs(half[:, :4] - full[:, :4]).max() < 4 * ulp * np.abs(full[:, :4]).max()


def test_exclusions_cover_the_decode_tail(detector_onnx) -> None:
    model = onnx.load(str(detector_onnx.path))
    by_name = {node.name: node for node in model.graph.node}
    decode = exclusion_nodes(model, "decode")
    head = exclusion_nodes(model, "head")
    assert exclusion_nodes(model, "none") == []
    ops = {by_name[name].op_type for name in decode}
    assert {"Exp", "ReduceSum", "Sigmoid", "Concat"} <= ops  # DFL (its rewritten softmax), class scores, output concat
    assert any("/dfl/" in name for name in decode)
    assert set(decode) < set(head)
    assert sorted(set(head) - set(decode)) == sorted(name for name in by_name
                                                     if name.endswith(".2/Conv") and "/cv" in name)
    assert not any("/model.0/" in name for name in head)


def test_calibration_reader_feeds_inference_preprocessing(make_student, demo: Demo) -> None:
    images = demo.image_paths()[:3]
    reader = CalibrationReader(images, imgsz=IMGSZ)
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch["images"])
    assert len(batches) == 3 and batches[0].shape == (1, 3, IMGSZ, IMGSZ) and batches[0].dtype == np.float32
    student: Student = make_student("yolov8")
    expected = student.preprocessor(IMGSZ)([str(path) for path in images]).pixel_values.numpy()
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["images"], batches[0])


def test_calibration_choice_is_seeded_from_folder_or_coco(demo: Demo, tmp_path: Path) -> None:
    from_folder = calibration_images(demo.images, 4, seed=1)
    assert from_folder == calibration_images(demo.images, 4, seed=1)
    assert len(set(from_folder)) == 4 and from_folder != calibration_images(demo.images, 4, seed=2)
    from_coco = calibration_images(demo.annotations, 100, seed=0)
    assert sorted(from_coco) == demo.image_paths()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no calibration images"):
        calibration_images(tmp_path / "empty", 4)
    with pytest.raises(DatasetError, match="not found"):
        calibration_images(tmp_path / "nowhere", 4)


def test_calibration_from_a_coco_file_moved_away_from_its_images_needs_images_dir(demo: Demo, tmp_path: Path) -> None:
    moved = relocate(demo.annotations, demo.images, tmp_path)
    with pytest.raises(DatasetError) as error:
        calibration_images(moved.annotations, 4)
    assert all(str(folder) in str(error.value) for folder in moved.tried_folders())
    assert f"--images '{moved.images}'" in str(error.value)
    chosen = calibration_images(moved.annotations, 4, seed=1, images_dir=moved.images)
    assert len(chosen) == 4 and all(path.parent == moved.images and path.is_file() for path in chosen)
