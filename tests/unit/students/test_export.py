"""ONNX export through ultralytics: exactly one input (the image), and the same numbers as the PyTorch model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mlcore.optimization import export_to_onnx
from mlcore.students import Student


@pytest.mark.parametrize("kind", ["yolov8", "yolov8_seg"])
def test_onnx_has_one_image_input_and_matches_torch(make_student: Callable[..., Student], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # onnxruntime writes its cache there
    import onnxruntime

    student = make_student(kind)
    student.model.half().float()  # what the checkpoint the exporter reads holds
    path = export_to_onnx(student, tmp_path / "out" / "student.onnx", imgsz=64, dynamic_batch=False).path
    assert path == tmp_path / "out" / "student.onnx" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["student.onnx"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert len(inputs) == 1 and inputs[0].shape == [1, 3, 64, 64]
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outputs = session.run(None, {inputs[0].name: pixels.numpy()})
    student.model.eval()
    with torch.no_grad():
        head = student.model(pixels)[0]
    expected = [head[0], head[1]] if kind == "yolov8_seg" else [head]
    assert len(outputs) == len(expected)
    # Each part against its own scale: pixel boxes reach hundreds while scores here are ~1e-3, so one tolerance
    # from the largest value would let any score through. fp32 ONNX Runtime vs PyTorch differ by rounding only.
    boxes, scores = slice(0, 4), slice(4, 4 + len(student.class_names))
    parts = [(boxes, scores, slice(4 + len(student.class_names), None)), (slice(None),)]
    for got, want, rows in zip(outputs, expected, parts):
        want = want.numpy()
        for part in (part for part in rows if want[:, part].size):  # a detector has no mask coefficients
            scale = max(float(np.abs(want[:, part]).max()), 1e-3)
            np.testing.assert_allclose(got[:, part], want[:, part], rtol=0, atol=1e-4 * scale)
