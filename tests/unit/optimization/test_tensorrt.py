"""TensorRT conversion: real builder code where TensorRT exists; one clear error (and skipped builds) here."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.errors import ConfigError, ModelError
from mlcore.optimization import convert_to_tensorrt, tensorrt_available

TENSORRT_REASON = "TensorRT is not installed here (it needs an NVIDIA GPU or a Jetson)"


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed: the missing-TensorRT message is not shown")
def test_missing_tensorrt_says_what_to_install(detector_onnx, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        convert_to_tensorrt(detector_onnx.path, tmp_path / "model.engine")
    assert "TensorRT" in caught.value.message and "pip install tensorrt" in caught.value.fix
    assert "JetPack" in caught.value.fix and not (tmp_path / "model.engine").exists()


def test_settings_are_checked_before_tensorrt_is_needed(detector_onnx, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch profile"):
        convert_to_tensorrt(detector_onnx.path, tmp_path / "m.engine", min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(ConfigError, match="QDQ model or calibration"):
        convert_to_tensorrt(detector_onnx.path, tmp_path / "m.engine", precision="int8")


@pytest.mark.skipif(not tensorrt_available(), reason=TENSORRT_REASON)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_with_a_dynamic_batch_profile(detector_onnx, detector_int8, tmp_path: Path,
                                                    precision: str) -> None:
    source = detector_int8.path if precision == "int8" else detector_onnx.path
    build = convert_to_tensorrt(source, tmp_path / "model.engine", precision=precision, workspace_gb=1.0,
                                min_batch=1, opt_batch=2, max_batch=4)
    assert build.path.stat().st_size > 0 and build.batch_profile == (1, 2, 4)
    assert build.int8_source == ("qdq" if precision == "int8" else None)
    assert (tmp_path / "model.engine.json").is_file()
