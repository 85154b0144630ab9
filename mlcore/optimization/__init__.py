"""Deployment: ONNX export, INT8 / FP16 quantization guarded by an accuracy gate, TensorRT engines.

- `export_to_onnx(student_or_pt, path, imgsz=640, opset=17, dynamic_batch=True)` -> OnnxExport (checked, with
  the ONNX Runtime vs PyTorch parity on real images)
- `quantize_int8_dynamic(onnx, out)`, `quantize_int8_static(onnx, out, CalibrationReader(...))`, `convert_to_fp16`
- `accuracy_gate(float_onnx, quantized_onnx, val_json)` -> GateDecision
- `convert_to_tensorrt(onnx, engine, precision="fp16")` (needs TensorRT; a clear ModelError without it)
- `optimize_model(best_pt, out_dir, quantize="int8", calibration_data=..., val_data=...)` -> OptimizationResult,
  writing model.onnx, model.int8.onnx, model.engine and export.json
"""

from __future__ import annotations

from mlcore.optimization.calibration import CalibrationReader, calibration_images
from mlcore.optimization.gate import GateDecision, accuracy_gate, decide, evaluate_model_file
from mlcore.optimization.onnx_export import OnnxExport, OutputParity, check_single_image_input, export_to_onnx
from mlcore.optimization.optimize import OptimizationResult, optimize_model
from mlcore.optimization.quantize import (
    QuantizedModel,
    convert_to_fp16,
    exclusion_nodes,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from mlcore.optimization.tensorrt import TensorRTBuild, convert_to_tensorrt, tensorrt_available

__all__ = ["CalibrationReader", "GateDecision", "OnnxExport", "OptimizationResult", "OutputParity",
           "QuantizedModel", "TensorRTBuild", "accuracy_gate", "calibration_images", "check_single_image_input",
           "convert_to_fp16", "convert_to_tensorrt", "decide", "evaluate_model_file", "exclusion_nodes",
           "export_to_onnx", "optimize_model", "quantize_int8_dynamic", "quantize_int8_static",
           "tensorrt_available"]
