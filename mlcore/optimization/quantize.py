"""INT8 (dynamic and static QDQ) and FP16 versions of an exported ONNX student, with ONNX Runtime's tools.

Static quantization pre-processes the graph first (`quant_pre_process`: shape inference and ONNX Runtime's
optimizations, so Conv+activation patterns are quantized as units), then calibrates activation ranges on letterboxed
images and writes a QDQ graph with per-channel weight scales (~2.2x faster than fp32 on CPU, ENGINEERING.md).

What stays in float (`exclude`): YOLOv8's head ends in a decode tail (DFL softmax, anchor arithmetic, sigmoid) that
concatenates boxes in pixels (0-640) with scores (0-1) into one output; a single int8 scale over that tensor rounds
every score to a multiple of ~2.5 pixels' worth, so the tail must stay float ("decode", the default). "head" also keeps
the head's final 1x1 convs float; "none" quantizes everything ONNX Runtime can. See `exclusion_nodes`. A segmenter's
mask-prototype branch (three convs at 1/4 scale, ~40 % of a yolov8n-seg's compute) is network, not decode: it is
quantized up to its last conv, whose activation stays float like the other branches' outputs.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open
from mlcore.logs import get_logger
from mlcore.optimization.onnx_export import check_single_image_input

log = get_logger(__name__)

Exclusion = Literal["decode", "head", "none"]
CalibrationMethodName = Literal["minmax", "entropy", "percentile"]
EXCLUSIONS: tuple[str, ...] = ("decode", "head", "none")
# ultralytics' head: cv2 (box distribution), cv3 (class scores), cv4 (mask coefficients); ".2" is each branch's
# final 1x1 conv, e.g. "/model.22/cv3.1/cv3.1.2/Conv". A segmenter's mask prototypes end in "/proto/cv3/conv/Conv".
_FINAL_HEAD_CONV = re.compile(r"(/cv[234]\.\d+/cv[234]\.\d+\.2/Conv|/proto/cv3/conv/Conv)$")


@dataclass(frozen=True)
class QuantizedModel:
    """What a quantization wrote."""

    path: Path
    method: str  # int8_static | int8_dynamic | fp16
    size_bytes: int
    source: Path
    source_size_bytes: int
    exclude: str | None = None
    excluded_nodes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / max(self.source_size_bytes, 1)

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "method": self.method, "size_bytes": self.size_bytes,
                "size_ratio": round(self.size_ratio, 4), "source": str(self.source), "exclude": self.exclude,
                "excluded_nodes": len(self.excluded_nodes), "settings": dict(self.settings)}


def exclusion_nodes(model: Any, exclude: Exclusion = "decode") -> list[str]:
    """Names of the nodes kept in float.

    decode: every node that does not feed the head's final convs (or a segmenter's last prototype conv): the
    box/score decode tail up to the outputs and its side branches (anchor points, strides: uint8 would make stride 8
    read 8.03 and every box on that level 0.4 % too large); head: those final convs as well; none: nothing. A graph
    without ultralytics' head names gets none (logged).
    """
    if exclude not in EXCLUSIONS:
        raise ConfigError(f"unknown exclusion {exclude!r}", where="quantization.exclude",
                          fix=f"use one of: {', '.join(EXCLUSIONS)}")
    if exclude == "none":
        return []
    import onnx

    if not hasattr(model, "graph"):
        model = onnx.load(str(model), load_external_data=False)
    nodes = list(model.graph.node)
    final_convs = [node for node in nodes if node.op_type == "Conv" and _FINAL_HEAD_CONV.search(node.name)]
    if not final_convs:
        log.warning("no ultralytics detection head found in the graph: quantizing every node")
        return []
    producer = {output: node for node in nodes for output in node.output}
    upstream: set[str] = set()  # the backbone and neck: everything the final convs read, directly or not
    queue = deque(name for conv in final_convs for name in conv.input)
    while queue:
        node = producer.get(queue.popleft())
        if node is not None and node.name not in upstream:
            upstream.add(node.name)
            queue.extend(node.input)
    final = {conv.name for conv in final_convs}
    return [node.name for node in nodes
            if node.name not in upstream and (node.name not in final or exclude == "head")]


def quantize_int8_dynamic(onnx_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
                          exclude: Exclusion = "decode", per_channel: bool = False) -> QuantizedModel:
    """Weights int8 ahead of time, activations quantized on the fly: no calibration data needed.

    Weights are uint8 because ONNX Runtime's CPU ConvInteger kernel takes uint8 weights only.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, output_path = Path(onnx_path), Path(output_path)
    with tempfile.TemporaryDirectory(prefix="mlcore-quant-") as tmp:
        prepared = _pre_processed(onnx_path, Path(tmp))
        excluded = exclusion_nodes(prepared, exclude)
        target = Path(tmp) / "quantized.onnx"
        try:
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QUInt8, per_channel=per_channel,
                             nodes_to_exclude=excluded)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(f"dynamic quantization failed: {exc}", where=str(onnx_path),
                             fix="check that this is a float ONNX model exported by `mlcore optimize`") from None
        _finish(target, output_path, onnx_path, {"mlcore_quantization": f"int8_dynamic exclude={exclude}"})
    log.info("dynamic int8 model %s (%d nodes kept float)", output_path, len(excluded))
    return QuantizedModel(path=output_path, method="int8_dynamic", size_bytes=output_path.stat().st_size,
                          source=onnx_path, source_size_bytes=onnx_path.stat().st_size, exclude=exclude,
                          excluded_nodes=excluded, settings={"weight_type": "uint8", "per_channel": per_channel})


def quantize_int8_static(onnx_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
                         calibration_reader: Any, *, per_channel: bool = True,
                         method: CalibrationMethodName = "minmax", percentile: float = 99.999,
                         quant_format: Literal["QDQ", "QOperator"] = "QDQ",
                         exclude: Exclusion = "decode") -> QuantizedModel:
    """Calibrated int8: activation ranges from calibration_reader (a `CalibrationReader`), QDQ graph, per-channel
    int8 weights, uint8 activations (the U8S8 pairing ONNX Runtime's x86 kernels are fastest with)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}", where="calibration.method",
                          fix="use minmax, entropy or percentile")
    onnx_path, output_path = Path(onnx_path), Path(output_path)
    extra_options: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra_options["CalibPercentile"] = percentile
    with tempfile.TemporaryDirectory(prefix="mlcore-quant-") as tmp:
        prepared = _pre_processed(onnx_path, Path(tmp))
        excluded = exclusion_nodes(prepared, exclude)
        target = Path(tmp) / "quantized.onnx"
        if hasattr(calibration_reader, "rewind"):
            calibration_reader.rewind()
        try:
            quantize_static(str(prepared), str(target), calibration_reader,
                            quant_format=QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method], nodes_to_exclude=excluded,
                            extra_options=extra_options)
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"static quantization failed: {exc}", where=str(onnx_path),
                             fix="check the calibration images and that this is a float ONNX model") from None
        _finish(target, output_path, onnx_path,
                {"mlcore_quantization": f"int8_static {quant_format} per_channel={per_channel} calibration={method} "
                                        f"exclude={exclude}"})
    images = len(getattr(calibration_reader, "images", ()) or ())
    log.info("static int8 model %s (%s, %d calibration images, %d nodes kept float)", output_path, method, images,
             len(excluded))
    return QuantizedModel(path=output_path, method="int8_static", size_bytes=output_path.stat().st_size,
                          source=onnx_path, source_size_bytes=onnx_path.stat().st_size, exclude=exclude,
                          excluded_nodes=excluded,
                          settings={"format": quant_format, "per_channel": per_channel, "calibration_method": method,
                                    "calibration_images": images, "activations": "uint8 (asymmetric)",
                                    "weights": "int8 (symmetric)"})


def convert_to_fp16(onnx_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> QuantizedModel:
    """Float16 weights and compute, float32 input and outputs (the same converter ultralytics' CPU fp16 export uses,
    shipped inside onnxruntime). fp16 pays off on GPUs (CUDA / TensorRT); on CPU ONNX Runtime casts back and it is
    usually slower than fp32."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxconverter_common.float16 import convert_float_to_float16
        except ImportError:
            raise ModelError("no fp16 converter available", where="fp16",
                             fix="install onnxruntime (which ships onnxruntime.transformers.float16) or "
                                 "onnxconverter-common") from None
    onnx_path, output_path = Path(onnx_path), Path(output_path)
    model = onnx.load(str(onnx_path))
    converted = convert_float_to_float16(model, keep_io_types=True)
    _set_metadata(converted, {"mlcore_quantization": "fp16 (float32 input/outputs)"})
    with atomic_open(output_path, "wb") as handle:
        handle.write(converted.SerializeToString())
    return QuantizedModel(path=output_path, method="fp16", size_bytes=output_path.stat().st_size, source=onnx_path,
                          source_size_bytes=onnx_path.stat().st_size, settings={"keep_io_types": True})


def has_qdq_nodes(model: Any) -> bool:
    """True for an explicitly quantized (QDQ) graph, which TensorRT builds in INT8 without a calibrator."""
    import onnx

    if not hasattr(model, "graph"):
        model = onnx.load(str(model), load_external_data=False)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def _pre_processed(onnx_path: Path, tmp: Path) -> Path:
    """quant_pre_process's output (ONNX Runtime's basic graph optimizations + ONNX shape inference) in tmp.

    Symbolic shape inference is skipped: ONNX Runtime recommends it for transformers, not CNNs, and where it cannot
    finish it drops sym_shape_infer_temp.onnx plus external-data files into the current directory.
    """
    from onnxruntime.quantization import quant_pre_process

    if not onnx_path.is_file():
        raise ModelError("ONNX model not found", where=str(onnx_path), fix="export it first (`mlcore optimize`)")
    check_single_image_input(onnx_path, where=str(onnx_path))
    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def _finish(produced: Path, output_path: Path, source: Path, extra: dict[str, str]) -> None:
    """Copy the source's metadata (names, imgsz, task, stride: what engines read) into the result; write atomically."""
    import onnx

    from mlcore.optimization.onnx_export import onnx_metadata

    model = onnx.load(str(produced))
    _set_metadata(model, {**onnx_metadata(source), **extra})
    with atomic_open(output_path, "wb") as handle:
        handle.write(model.SerializeToString())


def _set_metadata(model: Any, values: dict[str, str]) -> None:
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, str(value)


__all__ = ["EXCLUSIONS", "QuantizedModel", "convert_to_fp16", "exclusion_nodes", "has_qdq_nodes",
           "quantize_int8_dynamic", "quantize_int8_static"]
