"""One interface over PyTorch, ONNX Runtime and TensorRT; the same detections from each on the same real images."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.errors import ModelError
from mlcore.inference import InferenceEngine, ONNXEngine, PyTorchEngine, TensorRTEngine, letterbox_images, load_engine
from mlcore.inference.base import run_in_chunks
from tests.unit.inference.conftest import CLASS_NAMES, IMGSZ, Exported
from tests.unit.inference.helpers import assert_identical, assert_same_detections

ENGINES = (PyTorchEngine, ONNXEngine, TensorRTEngine)
ATTRIBUTES = ("class_names", "imgsz", "task", "name", "device")
CONF = 0.005  # random weights score low; this keeps a handful of detections per image


def tensorrt_engine(path: Path) -> TensorRTEngine:
    """The engine, or a skip carrying the reason its constructor gives (TensorRT / a GPU missing here)."""
    try:
        return TensorRTEngine(path)
    except ModelError as exc:
        pytest.skip(str(exc))


def test_the_engines_share_one_interface() -> None:
    for method in ("predict", "predict_batch"):
        signatures = {engine: inspect.signature(getattr(engine, method)) for engine in ENGINES}
        assert len(set(signatures.values())) == 1, signatures
    constructors = [list(inspect.signature(engine).parameters)[1:] for engine in ENGINES]
    assert all({"device", "imgsz", "class_names"} <= set(parameters) for parameters in constructors)
    assert list(inspect.signature(load_engine).parameters) == ["path", "device", "imgsz", "class_names", "threads"]


def test_each_engine_is_an_inference_engine(detect_model: Exported, tmp_path: Path) -> None:
    engines = [PyTorchEngine(detect_model.pt), ONNXEngine(detect_model.onnx)]
    for engine in engines:
        assert isinstance(engine, InferenceEngine)
        assert engine.class_names == CLASS_NAMES and engine.imgsz == IMGSZ and engine.task == "detect"
        assert engine.device == "cpu"
    assert [engine.name for engine in engines] == ["pytorch:student.pt", "onnx:student.onnx"]
    pinned = load_engine(detect_model.onnx, threads=1)  # `mlcore infer --threads`: ONNX Runtime's intra-op threads
    assert pinned.session.get_session_options().intra_op_num_threads == 1
    (tmp_path / "student.engine").write_bytes(b"\0" * 16)
    engine = tensorrt_engine(tmp_path / "student.engine")
    assert isinstance(engine, InferenceEngine) and all(hasattr(engine, name) for name in ATTRIBUTES)


def test_tensorrt_says_what_to_install_when_missing(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    (tmp_path / "model.engine").write_bytes(b"x")
    with pytest.raises(ModelError, match="TensorRT is not installed") as error:
        load_engine(tmp_path / "model.engine")
    assert "pip install tensorrt-cu12" in str(error.value) and "NVIDIA GPU" in str(error.value)


def test_load_engine_picks_by_suffix(detect_model: Exported, tmp_path: Path) -> None:
    assert isinstance(load_engine(detect_model.pt), PyTorchEngine)
    assert isinstance(load_engine(detect_model.onnx, device="cpu"), ONNXEngine)
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match="no inference engine"):
        load_engine(tmp_path / "model.tflite")
    with pytest.raises(ModelError, match="not found"):
        load_engine(tmp_path / "missing.onnx")


def test_onnx_matches_pytorch_on_real_images(exported: Exported, demo_images: list[Path]) -> None:
    torch_results = PyTorchEngine(exported.pt).predict(demo_images, conf=CONF)
    onnx_results = ONNXEngine(exported.onnx).predict(demo_images, conf=CONF)
    assert sum(len(result) for result in torch_results) >= len(demo_images)  # the comparison compares something
    assert len({tuple(result.boxes[0].round().tolist()) for result in torch_results if len(result)}) > 1
    for got, want in zip(onnx_results, torch_results):
        assert_same_detections(got, want)
        if exported.student.task == "segment":
            assert got.masks is not None and got.masks.shape == (len(got), *got.image_size)
        else:
            assert got.masks is None


def test_onnx_without_thread_spinning_gives_the_same_detections(detect_model: Exported,
                                                                 demo_images: list[Path]) -> None:
    spinning = ONNXEngine(detect_model.onnx).predict(demo_images, conf=CONF)
    quiet = ONNXEngine(detect_model.onnx, spinning=False)
    assert quiet.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for got, want in zip(quiet.predict(demo_images, conf=CONF), spinning):
        assert_same_detections(got, want)


def test_fixed_and_dynamic_batch_models_both_run_a_batch(exported: Exported, demo_images: list[Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fixed, dynamic = ONNXEngine(exported.onnx), ONNXEngine(exported.onnx_dynamic)
    assert fixed.fixed_batch == 1 and dynamic.dynamic_batch
    batch = letterbox_images(demo_images, IMGSZ)
    calls = {"fixed": 0, "dynamic": 0}
    for key, engine in (("fixed", fixed), ("dynamic", dynamic)):
        run = engine._run

        def counting(chunk: torch.Tensor, run=run, key=key) -> list[torch.Tensor]:
            calls[key] += 1
            return run(chunk)

        monkeypatch.setattr(engine, "_run", counting)
    from_fixed = fixed.predict_batch(batch.pixel_values.numpy(), batch.meta, conf=CONF)  # numpy in is fine too
    from_dynamic = dynamic.predict_batch(batch.pixel_values, batch.meta, conf=CONF)
    assert calls == {"fixed": len(demo_images), "dynamic": 1}
    one_by_one = [fixed.predict(image, conf=CONF)[0] for image in demo_images]
    for got, via_fixed, alone in zip(from_dynamic, from_fixed, one_by_one):
        assert_same_detections(got, via_fixed)
        assert_same_detections(via_fixed, alone)


def test_run_in_chunks_pads_a_fixed_batch_and_drops_the_padding() -> None:
    seen = []

    def run(chunk: torch.Tensor) -> list[torch.Tensor]:
        seen.append(chunk.shape[0])
        return [chunk.flatten(1).sum(1, keepdim=True)]

    pixels = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1) + 1
    (out,) = run_in_chunks(pixels, run, min_batch=2, max_batch=2)
    assert seen == [2, 2, 2] and out.flatten().tolist() == [1, 2, 3, 4, 5]
    seen.clear()
    (out,) = run_in_chunks(pixels, run)
    assert seen == [5] and out.shape == (5, 1)


def test_images_in_any_form_give_the_same_detections(detect_model: Exported, demo_images: list[Path]) -> None:
    engine = ONNXEngine(detect_model.onnx)
    rgb = np.asarray(Image.open(demo_images[0]).convert("RGB"))
    forms = [demo_images[0], str(demo_images[0]), rgb, Image.fromarray(rgb), [rgb]]
    results = [engine.predict(form, conf=CONF) for form in forms]
    assert all(len(result) == 1 for result in results)
    assert_identical([result[0] for result in results[1:]], [results[0][0]] * (len(forms) - 1))
    assert engine.predict([], conf=CONF) == []


def test_the_student_predicts_what_the_pytorch_engine_does(seg_model: Exported, demo_images: list[Path]) -> None:
    """Student.predict and the engines share one post-processing: the same numbers, bit for bit."""
    student = seg_model.student
    from_student = student.predict(demo_images, imgsz=IMGSZ, conf=CONF)
    engine = PyTorchEngine(student, imgsz=IMGSZ)
    assert engine.student is student and engine.name == "pytorch:yolov8n-seg"
    assert_identical(engine.predict(demo_images, conf=CONF), from_student)
    assert_identical(PyTorchEngine(seg_model.pt).predict(demo_images, conf=CONF), from_student)


def test_a_batch_must_be_letterboxed_to_the_engines_size(detect_model: Exported, demo_images: list[Path]) -> None:
    engine = ONNXEngine(detect_model.onnx)
    batch = letterbox_images(demo_images[:2], IMGSZ * 2)
    with pytest.raises(ValueError, match=f"{IMGSZ}x{IMGSZ}"):
        engine.predict_batch(batch.pixel_values, batch.meta)
    with pytest.raises(ValueError, match="B metas"):
        engine.predict_batch(letterbox_images(demo_images[:2], IMGSZ).pixel_values, batch.meta[:1])
