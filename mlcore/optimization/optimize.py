"""`mlcore optimize` as one call: export, quantize, gate, build an engine, and write DIR/export.json.

DIR/model.onnx (fp32, always), DIR/model.int8.onnx | model.int8-dynamic.onnx | model.fp16.onnx (when asked),
DIR/model.engine (+ model.engine.json) for TensorRT, and DIR/export.json: the files and their sizes, the ONNX/PyTorch
parity, the quantization settings, the accuracy-gate decision and which file to ship.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlcore.config.schemas.optimization import QuantizationConfig, TensorRTConfig
from mlcore.errors import ConfigError, DatasetError
from mlcore.io import write_json_atomic
from mlcore.logs import get_logger
from mlcore.optimization.calibration import CalibrationReader, calibration_images
from mlcore.optimization.gate import Evaluator, GateDecision, accuracy_gate
from mlcore.optimization.onnx_export import OnnxExport, export_to_onnx
from mlcore.optimization.quantize import (
    QuantizedModel,
    convert_to_fp16,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from mlcore.optimization.tensorrt import TensorRTBuild, convert_to_tensorrt, import_tensorrt

log = get_logger(__name__)

REPORT_NAME = "export.json"
ONNX_NAME = "model.onnx"
ENGINE_NAME = "model.engine"
QUANTIZED_NAMES = {"int8_static": "model.int8.onnx", "int8_dynamic": "model.int8-dynamic.onnx",
                   "fp16": "model.fp16.onnx"}
# CLI spellings -> QuantizationConfig.method
QUANTIZE_METHODS = {"int8": "int8_static", "int8-static": "int8_static", "int8_static": "int8_static",
                    "int8-dynamic": "int8_dynamic", "int8_dynamic": "int8_dynamic", "fp16": "fp16",
                    "none": "none"}
FORMATS = {"onnx": "onnx", "engine": "engine", "tensorrt": "engine", "trt": "engine"}
PARITY_IMAGES = 4


@dataclass
class OptimizationResult:
    """What optimize_model wrote; `recommended` is the file to ship (the gate's choice, or the engine)."""

    output_dir: Path
    onnx: OnnxExport
    quantized: QuantizedModel | None
    gate: GateDecision | None
    engine: TensorRTBuild | None
    recommended: Path
    recommended_reason: str
    report_path: Path
    gate_skipped_reason: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        quantization = None if self.quantized is None else _relative(self.quantized.to_json(), self.output_dir)
        gate: dict[str, Any] | None
        if self.gate is not None:
            gate = {"evaluated": True, **_relative(self.gate.to_json(), self.output_dir)}
        elif self.gate_skipped_reason is not None:
            gate = {"evaluated": False, "reason": self.gate_skipped_reason}
        else:
            gate = None
        parity = self.onnx.parity
        return {
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "source": {"task": self.onnx.task, "class_names": self.onnx.class_names, "imgsz": self.onnx.imgsz,
                       "stride": self.onnx.stride},
            "formats": [entry["format"] for entry in self.files],
            "files": self.files,
            "onnx": {key: value for key, value in _relative(self.onnx.to_json(), self.output_dir).items()
                     if key not in ("parity",)},
            "parity": None if parity is None else {**self.onnx.to_json()["parity"]},
            "quantization": quantization,
            "accuracy_gate": gate,
            "tensorrt": None if self.engine is None else _relative(self.engine.to_json(), self.output_dir),
            "recommended": self.recommended.name,
            "recommended_reason": self.recommended_reason,
        }


def optimize_model(model_pt: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
                   formats: Sequence[str] = ("onnx",), quantize: str | None = None,
                   calibration_data: str | os.PathLike[str] | None = None,
                   calibration_images_dir: str | os.PathLike[str] | None = None,
                   val_data: str | os.PathLike[str] | None = None, val_images: str | os.PathLike[str] | None = None,
                   category_ids: Mapping[str, int] | None = None, imgsz: int | None = None,
                   config: QuantizationConfig | None = None, tensorrt_config: TensorRTConfig | None = None,
                   evaluate: Evaluator | None = None) -> OptimizationResult:
    """Export a student .pt to DIR/model.onnx and, as asked, quantize it, gate it and build a TensorRT engine.

    formats: "onnx" (always written) and/or "engine" (TensorRT; needs TensorRT and a GPU). quantize: None (the
    config's method when a config is given, else no quantization), "int8" (static, calibrated), "int8-dynamic",
    "fp16" or "none". calibration_data: a folder of training images or a COCO file (default: config.calibration.data).
    val_data / val_images: the validation split (COCO file + images) the accuracy gate evaluates on; without it the
    gate is skipped and export.json says so. imgsz: default the checkpoint's training size (640 when unknown).
    evaluate: path -> metrics (0-1) override for the gate (default: mlcore.inference + mlcore.evaluation).
    """
    explicit_config = config is not None
    config = config or QuantizationConfig()
    tensorrt_config = tensorrt_config or TensorRTConfig()
    wanted = _formats(formats)
    method = _method(quantize, config if explicit_config else None)
    if "engine" in wanted:
        import_tensorrt()  # fail before minutes of export and calibration, with what to install
    output_dir = Path(output_dir)
    model_pt = Path(model_pt)
    imgsz = imgsz or _checkpoint_imgsz(model_pt)
    calibration_source = calibration_data if calibration_data is not None else config.calibration.data
    calibration: list[Path] = []
    if method == "int8_static" or ("engine" in wanted and tensorrt_config.precision == "int8"):
        if calibration_source is None:
            raise DatasetError("static int8 needs calibration images", where="calibration.data",
                               fix="pass --calib-data (a folder of training images or a COCO file), or use "
                                   "--quantize int8-dynamic")
        calibration = calibration_images(calibration_source, config.calibration.num_images,
                                         seed=config.calibration.seed, images_dir=calibration_images_dir)

    onnx_export = export_to_onnx(model_pt, output_dir / ONNX_NAME, imgsz=imgsz, opset=config.onnx.opset,
                                 dynamic_batch=config.onnx.dynamic_batch,
                                 parity_images=_parity_images(val_data, val_images, calibration))
    files = [_file_entry(onnx_export.path, "onnx", "fp32")]
    quantized = _quantize(method, onnx_export.path, output_dir, config, calibration, imgsz)
    gate, gate_skipped = None, None
    if quantized is not None:
        files.append(_file_entry(quantized.path, method, _PRECISION[method]))
        if not config.accuracy_gate.enabled:
            gate_skipped = "accuracy_gate.enabled is false"
        elif val_data is None and evaluate is None:
            gate_skipped = ("no validation data given (--val-data): the quantized model was not compared with the "
                            "float one")
            log.warning("accuracy gate skipped: %s", gate_skipped)
        else:
            gate = accuracy_gate(onnx_export.path, quantized.path, val_data, val_images=val_images,
                                 gate=config.accuracy_gate, category_ids=category_ids, evaluate=evaluate)
    shipped = gate.kept_path if gate is not None else (quantized.path if quantized else onnx_export.path)
    engine = None
    if "engine" in wanted:
        source = shipped if (tensorrt_config.precision == "int8" and quantized is not None
                             and quantized.method == "int8_static" and shipped == quantized.path) else onnx_export.path
        engine = convert_to_tensorrt(source, output_dir / ENGINE_NAME, config=tensorrt_config,
                                     calibration_images=[str(path) for path in calibration] or None)
        files.append(_file_entry(engine.path, "engine", engine.precision))
    recommended, reason = _recommendation(onnx_export, quantized, gate, gate_skipped, engine)
    result = OptimizationResult(output_dir=output_dir, onnx=onnx_export, quantized=quantized, gate=gate,
                                engine=engine, recommended=recommended, recommended_reason=reason,
                                report_path=output_dir / REPORT_NAME, gate_skipped_reason=gate_skipped, files=files)
    write_json_atomic(result.report_path, result.to_json())
    log.info("wrote %s; recommended: %s (%s)", result.report_path, recommended.name, reason)
    if gate is not None:
        gate.enforce()  # on_fail: fail -> ModelError, after export.json records why
    return result


_PRECISION = {"int8_static": "int8", "int8_dynamic": "int8", "fp16": "fp16"}


def _quantize(method: str, onnx_path: Path, output_dir: Path, config: QuantizationConfig,
              calibration: list[Path], imgsz: int) -> QuantizedModel | None:
    if method == "none":
        return None
    target = output_dir / QUANTIZED_NAMES[method]
    if method == "int8_dynamic":
        return quantize_int8_dynamic(onnx_path, target, exclude=config.exclude)
    if method == "fp16":
        return convert_to_fp16(onnx_path, target)
    reader = CalibrationReader.for_model(onnx_path, calibration, imgsz=imgsz)
    return quantize_int8_static(onnx_path, target, reader, per_channel=config.per_channel,
                                method=config.calibration.method, percentile=config.calibration.percentile,
                                quant_format=config.format, exclude=config.exclude)


def _recommendation(onnx_export: OnnxExport, quantized: QuantizedModel | None, gate: GateDecision | None,
                    gate_skipped: str | None, engine: TensorRTBuild | None) -> tuple[Path, str]:
    if engine is not None:
        return engine.path, f"TensorRT {engine.precision} engine built for {engine.device_name}; run it there"
    if quantized is None:
        return onnx_export.path, "no quantization asked for"
    if gate is not None:
        return gate.kept_path, gate.reason
    return quantized.path, f"quantized as asked; accuracy not checked ({gate_skipped})"


def _formats(formats: Sequence[str]) -> set[str]:
    if isinstance(formats, str):
        formats = [formats]
    unknown = [name for name in formats if name.lower() not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format(s) {unknown}", where="--format",
                          fix="use onnx and/or engine (TensorRT)")
    return {FORMATS[name.lower()] for name in formats} | {"onnx"}


def _method(quantize: str | None, config: QuantizationConfig | None) -> str:
    if quantize is None:
        return config.method if config is not None else "none"
    method = QUANTIZE_METHODS.get(quantize.lower())
    if method is None:
        raise ConfigError(f"unknown quantization {quantize!r}", where="--quantize",
                          fix="use int8 (static, calibrated), int8-dynamic or fp16")
    return method


def _checkpoint_imgsz(model_pt: Path) -> int:
    """The size the checkpoint was trained / saved at (ultralytics' train_args.imgsz), else 640."""
    from mlcore.students.student import load_ultralytics_checkpoint

    if not model_pt.is_file():
        return 640  # export_to_onnx reports the missing file
    _, checkpoint = load_ultralytics_checkpoint(model_pt)
    value = (checkpoint.get("train_args") or {}).get("imgsz", 640)
    if isinstance(value, (list, tuple)):
        value = max(value)
    return int(value)


def _parity_images(val_data: str | os.PathLike[str] | None, val_images: str | os.PathLike[str] | None,
                   calibration: list[Path]) -> list[Path] | None:
    """A few real images to compare ONNX with PyTorch on: the validation split's, else calibration images."""
    if val_data is not None:
        try:
            return calibration_images(val_data, PARITY_IMAGES, images_dir=val_images)
        except DatasetError:
            log.warning("no validation images found for the parity check; trying the calibration images")
    return calibration[:PARITY_IMAGES] or None


def _file_entry(path: Path, format_name: str, precision: str) -> dict[str, Any]:
    size = path.stat().st_size
    return {"name": path.name, "format": format_name, "precision": precision, "size_bytes": size,
            "size_mb": round(size / 2**20, 3)}


def _relative(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """Paths inside the output folder as names, so export.json stays true when the folder moves."""
    out = {}
    for key, value in record.items():
        if isinstance(value, str) and (key.endswith("path") or key == "source"):
            try:
                value = str(Path(value).relative_to(root)) if value else value
            except ValueError:
                pass
        out[key] = value
    return out


__all__ = ["ENGINE_NAME", "ONNX_NAME", "QUANTIZED_NAMES", "REPORT_NAME", "OptimizationResult", "optimize_model"]
