"""Class names, input size and task come from the exporter's metadata; without it, errors say what to pass."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from mlcore.errors import ModelError
from mlcore.inference import ModelMetadata, ONNXEngine, sidecar_path, write_sidecar
from tests.unit.inference.conftest import CLASS_NAMES, IMGSZ, Exported
from tests.unit.inference.helpers import assert_identical


def strip_metadata(source: Path, target: Path) -> Path:
    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.save(model, str(target))
    return target


def test_the_exporters_metadata_names_the_classes(seg_model: Exported) -> None:
    keys = {prop.key for prop in onnx.load(str(seg_model.onnx)).metadata_props}
    assert {"names", "imgsz", "task"} <= keys
    engine = ONNXEngine(seg_model.onnx)
    assert (engine.class_names, engine.imgsz, engine.task) == (CLASS_NAMES, IMGSZ, "segment")


def test_missing_metadata_is_a_clear_error_until_given(seg_model: Exported, demo_images: list[Path],
                                                       tmp_path: Path) -> None:
    bare = strip_metadata(seg_model.onnx_dynamic, tmp_path / "bare.onnx")  # dynamic H, W: no size to read off
    with pytest.raises(ModelError, match="no class names") as error:
        ONNXEngine(bare)
    assert "class_names=" in str(error.value)
    with pytest.raises(ModelError, match="input size is unknown") as error:
        ONNXEngine(bare, class_names=CLASS_NAMES)
    assert "imgsz=" in str(error.value)
    engine = ONNXEngine(bare, class_names=CLASS_NAMES, imgsz=IMGSZ)
    assert engine.task == "segment"  # read off the outputs: prototypes mean segmentation
    assert_identical(engine.predict(demo_images[:2], conf=0.005),
                     ONNXEngine(seg_model.onnx_dynamic).predict(demo_images[:2], conf=0.005))


def test_a_static_input_gives_the_size_and_a_sidecar_gives_the_names(detect_model: Exported, tmp_path: Path) -> None:
    bare = strip_metadata(detect_model.onnx, tmp_path / "model.onnx")
    assert ONNXEngine(bare, class_names=["a", "b", "c"]).imgsz == IMGSZ
    write_sidecar(bare, ModelMetadata(class_names=["x", "y", "z"], imgsz=IMGSZ, task="detect"))
    assert sidecar_path(bare).name == "model.onnx.json"
    assert ONNXEngine(bare).class_names == ["x", "y", "z"]


def test_class_names_must_fit_the_outputs(detect_model: Exported) -> None:
    with pytest.raises(ModelError, match="2 class names do not fit"):
        ONNXEngine(detect_model.onnx, class_names=["a", "b"])
    with pytest.raises(ModelError, match="fixed input"):
        ONNXEngine(detect_model.onnx, imgsz=IMGSZ * 2)


def test_a_model_with_prompt_inputs_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    prompt = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1, 3, 32, 32])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Add", ["images", "input_ids"], ["out"])], "g", [image, prompt], [out])
    path = tmp_path / "two_inputs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="one \\(B, 3, H, W\\) image input"):
        ONNXEngine(path)
