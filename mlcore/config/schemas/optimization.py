"""Deployment configs: ONNX export with quantization (ONNX Runtime) and TensorRT engine building.

An accuracy gate guards quantization: a faster model that lost too much mAP is not kept silently.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlcore.config.schemas.common import ConfigModel, OptionalPath


class CalibrationSettings(ConfigModel):
    num_images: int = Field(
        default=100, ge=1, description="Images fed through the model to measure activation ranges; 50-500."
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        default="minmax",
        description="Range estimator: minmax (fast, outlier-sensitive), entropy (KL) or percentile (clips outliers).",
    )
    percentile: float = Field(
        default=99.999, gt=90.0, le=100.0, description="percentile method: activation percentile kept."
    )
    data: OptionalPath = Field(
        default=None,
        description="Folder of representative images, or a COCO file whose images are used (placeholder "
        "{{dataset_train_images}}); use training images, never the images you evaluate on. null: not set "
        "(calibration will ask for it).",
    )
    seed: int = Field(default=0, ge=0, description="Seed for choosing which images calibrate.")


class AccuracyGate(ConfigModel):
    enabled: bool = Field(default=True, description="Evaluate the quantized model and compare with the float one.")
    metric: str = Field(default="map50_95", min_length=1, description="Metric compared (COCO mAP@[.5:.95] by default).")
    max_drop: float = Field(
        default=1.0, ge=0.0, description="Largest allowed drop, in mAP points (0-100 scale): 1.0 = one point."
    )
    on_fail: Literal["keep_higher_precision", "fail", "warn"] = Field(
        default="keep_higher_precision",
        description="keep_higher_precision: ship the float/fp16 model instead; fail: stop with an error; "
        "warn: keep the quantized model and report.",
    )


class OnnxExport(ConfigModel):
    opset: int = Field(default=17, ge=13, le=23, description="ONNX opset; 17 is supported by ORT and TensorRT 8.6+.")
    dynamic_batch: bool = Field(default=True, description="Export with a variable batch dimension.")


class QuantizationConfig(ConfigModel):
    """ONNX Runtime quantization; static per-channel QDQ measured ~2.2x faster than fp32 on CPU for YOLOv8n."""

    kind: Literal["quantization"] = Field(default="quantization", description="Config type.")
    method: Literal["int8_static", "int8_dynamic", "fp16", "none"] = Field(
        default="int8_static",
        description="int8_static (calibrated; fastest), int8_dynamic (no calibration; often no faster for CNNs), "
        "fp16 (GPU) or none (fp32).",
    )
    format: Literal["QDQ", "QOperator"] = Field(
        default="QDQ", description="Quantized graph format; QDQ is what TensorRT and most runtimes accelerate."
    )
    per_channel: bool = Field(default=True, description="One scale per output channel: better accuracy for convs.")
    exclude: Literal["decode", "head", "none"] = Field(
        default="decode",
        description="Nodes kept in float: decode (the head's box/score decode tail after its final convs; boxes in "
        "pixels and scores 0-1 share one output, which one int8 scale destroys), head (also the head's final "
        "1x1 convs) or none (quantize everything; measured to collapse YOLOv8 mAP to 0).",
    )
    calibration: CalibrationSettings = Field(
        default_factory=CalibrationSettings, description="Calibration data (int8_static only)."
    )
    accuracy_gate: AccuracyGate = Field(default_factory=AccuracyGate, description="Accept/reject the result.")
    onnx: OnnxExport = Field(default_factory=OnnxExport, description="Export settings.")


class OptimizationProfile(ConfigModel):
    min_batch: int = Field(default=1, ge=1, description="Smallest batch the engine accepts.")
    opt_batch: int = Field(default=4, ge=1, description="Batch TensorRT tunes kernels for.")
    max_batch: int = Field(default=8, ge=1, description="Largest batch the engine accepts.")

    @model_validator(mode="after")
    def _ordered(self) -> OptimizationProfile:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("need min_batch <= opt_batch <= max_batch")
        return self


class JetsonSettings(ConfigModel):
    dla_core: int | None = Field(
        default=None, ge=0, le=1, description="Run on this Jetson DLA core (0 or 1); null: GPU only."
    )
    gpu_fallback: bool = Field(default=True, description="Let layers the DLA cannot run fall back to the GPU.")


class TensorRTConfig(ConfigModel):
    """TensorRT engine build from the exported ONNX model; engines are specific to one GPU and TensorRT version."""

    kind: Literal["tensorrt"] = Field(default="tensorrt", description="Config type.")
    precision: Literal["fp16", "int8", "fp32"] = Field(
        default="fp16", description="Engine precision; int8 needs calibration (cache below) or a QDQ model."
    )
    workspace_gb: float = Field(default=4.0, gt=0.0, description="Builder scratch memory limit in GiB.")
    profile: OptimizationProfile = Field(default_factory=OptimizationProfile, description="Dynamic batch range.")
    imgsz: int = Field(default=640, ge=32, description="Input size the engine is built for (match the student).")
    int8_calibration_cache: OptionalPath = Field(
        default=None, description="Calibration cache file, reused across builds; null: <run dir>/calibration.cache."
    )
    jetson: JetsonSettings = Field(default_factory=JetsonSettings, description="Jetson DLA settings.")
    builder_optimization_level: int = Field(
        default=3, ge=0, le=5, description="0-5: higher searches longer for faster kernels (3 is TensorRT's default)."
    )
