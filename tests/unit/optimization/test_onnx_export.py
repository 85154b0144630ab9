"""export_to_onnx: one image input, the metadata engines read, and the same numbers as PyTorch on real images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import onnx
import pytest
from onnx import TensorProto, helper

from mlcore.errors import ConfigError, ModelError
from mlcore.optimization import check_single_image_input, export_to_onnx
from mlcore.optimization.onnx_export import onnx_metadata, parse_metadata_value
from mlcore.students import Student

from .conftest import CLASS_NAMES, IMGSZ, Demo


def test_detector_export_matches_pytorch_on_real_images(detector_onnx, demo: Demo) -> None:
    parity = detector_onnx.parity
    assert parity.inputs == "images" and parity.images == 3
    # fp32 ONNX Runtime vs PyTorch: differences are float rounding, far below a pixel or a score step
    assert parity.relative["output0"] < 1e-4
    assert parity.boxes < 1e-2 and parity.scores < 1e-4
    assert parity.max_abs_diff == max(parity.outputs.values())


def test_detector_export_keeps_engine_metadata_and_a_dynamic_batch(detector_onnx) -> None:
    import onnxruntime

    metadata = {key: parse_metadata_value(value) for key, value in onnx_metadata(detector_onnx.path).items()}
    assert metadata["names"] == dict(enumerate(CLASS_NAMES))
    assert metadata["task"] == "detect" and metadata["stride"] == 32 and list(metadata["imgsz"]) == [IMGSZ, IMGSZ]
    assert detector_onnx.input_shape == ["batch", 3, IMGSZ, IMGSZ] and detector_onnx.opset == 17
    model = onnx.load(str(detector_onnx.path))
    assert {opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")} == {17}
    session = onnxruntime.InferenceSession(str(detector_onnx.path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": np.zeros((3, 3, IMGSZ, IMGSZ), np.float32)})
    assert outputs[0].shape[0] == 3
    assert sorted(p.name for p in detector_onnx.path.parent.iterdir()) == ["model.onnx"]  # no temp files left


def test_segmenter_export_matches_pytorch(make_student: Callable[..., Student], demo: Demo, tmp_path: Path) -> None:
    student = make_student("yolov8_seg")
    threads = torch.get_num_threads()
    exported = export_to_onnx(student, tmp_path / "seg.onnx", imgsz=IMGSZ, dynamic_batch=False,
                              parity_images=demo.image_paths()[:1])
    assert torch.get_num_threads() == threads  # ultralytics' exporter would leave torch on one thread fewer
    assert exported.output_names == ["output0", "output1"] and exported.input_shape == [1, 3, IMGSZ, IMGSZ]
    assert exported.task == "segment" and exported.parity.inputs == "images"
    assert max(exported.parity.relative.values()) < 1e-4


def _two_input_model(path: Path) -> Path:
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    prompt = helper.make_tensor_value_info("prompt", TensorProto.FLOAT, [1, 3, 32, 32])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Add", ["images", "prompt"], ["output0"])], "prompted",
                              [image, prompt], [output])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_graph_with_a_prompt_input_is_refused(tmp_path: Path) -> None:
    path = _two_input_model(tmp_path / "prompted.onnx")
    with pytest.raises(ModelError, match="2 inputs"):
        check_single_image_input(path)


def test_single_input_check_accepts_the_export(detector_onnx) -> None:
    assert check_single_image_input(detector_onnx.path).name == "images"


def test_bad_requests_fail_before_exporting(detector_pt: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opset"):
        export_to_onnx(detector_pt, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ModelError, match="not found"):
        export_to_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="multiple of"):
        export_to_onnx(detector_pt, tmp_path / "m.onnx", imgsz=100)
    assert not (tmp_path / "m.onnx").exists()


def test_the_export_has_no_inner_axis_softmax(detector_onnx) -> None:
    # ONNX Runtime's Softmax over an inner axis (YOLOv8's DFL) is ~15x slower than its elementwise form.
    model = onnx.load(str(detector_onnx.path))
    assert not [node for node in model.graph.node if node.op_type == "Softmax"]
    assert {"ReduceMax", "Exp", "ReduceSum"} <= {node.op_type for node in model.graph.node}


@pytest.mark.parametrize(("opset", "axis"), [(17, 1), (18, 1), (17, -3), (17, -1)])
def test_the_softmax_rewrite_computes_the_same_numbers(opset: int, axis: int) -> None:
    import onnxruntime

    from mlcore.optimization.graph_rewrites import decompose_inner_softmax

    shape = [2, 16, 4, 30]
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    before = model.SerializeToString()
    rewritten = decompose_inner_softmax(model)
    assert rewritten == (0 if axis == -1 else 1)
    onnx.checker.check_model(model, full_check=True)
    x = (np.random.default_rng(0).normal(size=shape) * 20).astype(np.float32)  # large logits: the max shift matters
    run = [onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for data in (before, model.SerializeToString())]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-5, atol=1e-7)
