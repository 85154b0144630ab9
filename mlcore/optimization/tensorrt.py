"""ONNX -> TensorRT engine: FP16 / INT8 / FP32, a dynamic-batch optimization profile, a workspace limit, and the
Jetson options (DLA core, GPU fallback).

TensorRT is imported only here, only when called: it installs on machines with an NVIDIA GPU (or ships with JetPack),
and an engine is tied to the GPU and TensorRT version that built it, so build on the device that runs it.
INT8 comes from the graph's own QDQ nodes (our static-quantized model: explicit quantization, no calibrator) or, for
a float graph, from a calibration cache / calibration images (implicit quantization through an entropy calibrator).
The class names, input size and task go into a sidecar `<engine>.json` that `mlcore.inference` reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlcore.config.schemas.optimization import TensorRTConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open
from mlcore.logs import get_logger

log = get_logger(__name__)

Precision = Literal["fp16", "int8", "fp32"]
TENSORRT_MISSING_FIX = (
    "install TensorRT on the machine that will run the engine: an NVIDIA GPU with CUDA 12 -> "
    "`pip install tensorrt` (pulls tensorrt-cu12 from NVIDIA's index), a Jetson -> it ships with JetPack "
    "(python3-libnvinfer). Engines are specific to one GPU and TensorRT version, so build them there; on machines "
    "without TensorRT use the ONNX models (model.onnx / model.int8.onnx) with ONNX Runtime instead")


@dataclass(frozen=True)
class TensorRTBuild:
    """What `convert_to_tensorrt` wrote."""

    path: Path
    precision: str
    int8_source: str | None  # "qdq" | "calibration" | None
    batch_profile: tuple[int, int, int]
    imgsz: int
    size_bytes: int
    tensorrt_version: str
    device_name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "precision": self.precision, "int8_source": self.int8_source,
                "batch_profile": list(self.batch_profile), "imgsz": self.imgsz, "size_bytes": self.size_bytes,
                "tensorrt_version": self.tensorrt_version, "device_name": self.device_name,
                "settings": dict(self.settings)}


def import_tensorrt() -> Any:
    """`import tensorrt`, or one ModelError that says what to install and where TensorRT works."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ModelError(f"TensorRT is not installed here ({exc})", where="tensorrt",
                         fix=TENSORRT_MISSING_FIX) from None
    except OSError as exc:  # the bindings are there but libnvinfer / libnvonnxparser are not
        raise ModelError(f"TensorRT's libraries cannot be loaded ({exc})", where="tensorrt",
                         fix=TENSORRT_MISSING_FIX) from None
    return tensorrt


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
    except ModelError:
        return False
    return True


def convert_to_tensorrt(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], *,
                        precision: Precision | None = None, workspace_gb: float | None = None,
                        min_batch: int | None = None, opt_batch: int | None = None, max_batch: int | None = None,
                        int8_calibration_cache: str | os.PathLike[str] | None = None,
                        calibration_images: list[str | os.PathLike[str]] | None = None,
                        dla_core: int | None = None, gpu_fallback: bool | None = None,
                        builder_optimization_level: int | None = None,
                        config: TensorRTConfig | None = None) -> TensorRTBuild:
    """Build a serialized TensorRT engine from an ONNX student and write it (atomically) to engine_path.

    Arguments left None take their value from `config` (tensorrt.template.yaml; schema defaults when None).
    precision int8: a QDQ graph (`quantize_int8_static`) needs nothing more; a float graph needs an existing
    int8_calibration_cache or calibration_images (the cache is then written for the next build).
    dla_core: a Jetson DLA core (0 / 1); with gpu_fallback, layers the DLA cannot run go to the GPU.
    """
    config = config or TensorRTConfig()
    precision = precision or config.precision
    workspace_gb = config.workspace_gb if workspace_gb is None else workspace_gb
    profile = (config.profile.min_batch if min_batch is None else min_batch,
               config.profile.opt_batch if opt_batch is None else opt_batch,
               config.profile.max_batch if max_batch is None else max_batch)
    dla_core = config.jetson.dla_core if dla_core is None else dla_core
    gpu_fallback = config.jetson.gpu_fallback if gpu_fallback is None else gpu_fallback
    level = config.builder_optimization_level if builder_optimization_level is None else builder_optimization_level
    cache = int8_calibration_cache if int8_calibration_cache is not None else config.int8_calibration_cache
    _check_settings(precision, workspace_gb, profile, dla_core, level)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ModelError("ONNX model not found", where=str(onnx_path), fix="export it first (`mlcore optimize`)")
    from mlcore.optimization.onnx_export import check_single_image_input, onnx_metadata, parse_metadata_value
    from mlcore.optimization.quantize import has_qdq_nodes

    check_single_image_input(onnx_path, where=str(onnx_path))
    int8_source = None
    if precision == "int8":
        if has_qdq_nodes(onnx_path):
            int8_source = "qdq"
        elif (cache and Path(cache).is_file()) or calibration_images:
            int8_source = "calibration"
        else:
            raise ConfigError("int8 needs a QDQ model or calibration data", where="tensorrt.precision",
                              fix="build from model.int8.onnx (`mlcore optimize --quantize int8`), or give "
                                  "int8_calibration_cache / calibration images")
    trt = import_tensorrt()
    import torch  # device buffers for the calibrator, and the device name

    if not torch.cuda.is_available():
        raise ModelError("TensorRT needs an NVIDIA GPU, and CUDA sees none here", where="tensorrt",
                         fix=TENSORRT_MISSING_FIX)
    metadata = {key: parse_metadata_value(value) for key, value in onnx_metadata(onnx_path).items()}
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise ModelError(f"TensorRT's ONNX parser rejected the model: {errors}", where=str(onnx_path),
                         fix="re-export with opset 17 (`mlcore optimize`); check the TensorRT version supports it")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if hasattr(builder_config, "builder_optimization_level"):  # TensorRT 8.6+
        builder_config.builder_optimization_level = level
    image_input = network.get_input(0)
    channels, height, width = (int(value) for value in image_input.shape[1:])
    imgsz = height if height > 0 else int(_first(metadata.get("imgsz"), 640))
    height, width = (height if height > 0 else imgsz), (width if width > 0 else imgsz)
    if int(image_input.shape[0]) > 0:  # a static-batch export: the profile is that batch
        profile = (int(image_input.shape[0]),) * 3
    optimization_profile = builder.create_optimization_profile()
    optimization_profile.set_shape(image_input.name, *[(batch, channels, height, width) for batch in profile])
    builder_config.add_optimization_profile(optimization_profile)
    if precision == "fp16" or precision == "int8":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; TensorRT builds it anyway, possibly slower than fp32")
        builder_config.set_flag(trt.BuilderFlag.FP16)  # int8: layers without int8 kernels run fp16, not fp32
    calibrator = None
    if precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
        if int8_source == "calibration":
            cache_path = Path(cache) if cache else engine_path.with_name("calibration.cache")
            calibrator = _entropy_calibrator(trt, torch, calibration_images or [], imgsz=imgsz, batch=profile[1],
                                             input_name=image_input.name, cache_path=cache_path)
            builder_config.int8_calibrator = calibrator
            builder_config.set_calibration_profile(optimization_profile)
    if dla_core is not None:
        if precision == "fp32":
            raise ConfigError("a DLA runs fp16 or int8 only", where="tensorrt.jetson.dla_core",
                              fix="set precision fp16 (or int8), or dla_core null")
        if builder.num_DLA_cores <= dla_core:
            raise ModelError(f"DLA core {dla_core} asked for; this device has {builder.num_DLA_cores}",
                             where="tensorrt.jetson.dla_core", fix="set dla_core null (GPU) or to an existing core")
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = dla_core
        if gpu_fallback:
            builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    log.info("building TensorRT %s engine from %s (batch %s, workspace %.1f GiB)", precision, onnx_path,
             profile, workspace_gb)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise ModelError("TensorRT could not build the engine (see TensorRT's log above)", where=str(onnx_path),
                         fix="raise workspace_gb, try precision fp16, or set dla_core null")
    with atomic_open(engine_path, "wb") as handle:
        handle.write(memoryview(serialized))
    _write_engine_sidecar(engine_path, metadata, imgsz)
    return TensorRTBuild(path=engine_path, precision=precision, int8_source=int8_source, batch_profile=profile,
                         imgsz=imgsz, size_bytes=engine_path.stat().st_size, tensorrt_version=trt.__version__,
                         device_name=torch.cuda.get_device_name(), settings={
                             "workspace_gb": workspace_gb, "builder_optimization_level": level,
                             "dla_core": dla_core, "gpu_fallback": gpu_fallback,
                             "calibration_cache": str(calibrator.cache_path) if calibrator else None})


def _check_settings(precision: str, workspace_gb: float, profile: tuple[int, int, int], dla_core: int | None,
                    level: int) -> None:
    if precision not in ("fp16", "int8", "fp32"):
        raise ConfigError(f"unknown precision {precision!r}", where="tensorrt.precision", fix="use fp16, int8 or fp32")
    if workspace_gb <= 0:
        raise ConfigError("workspace_gb must be positive", where="tensorrt.workspace_gb", fix="e.g. 4 (Jetson: 1-2)")
    if not 1 <= profile[0] <= profile[1] <= profile[2]:
        raise ConfigError(f"batch profile {profile} is not 1 <= min <= opt <= max", where="tensorrt.profile",
                          fix="e.g. min 1, opt 4, max 8")
    if dla_core is not None and dla_core not in (0, 1):
        raise ConfigError(f"dla_core {dla_core}: Jetsons have DLA cores 0 and 1", where="tensorrt.jetson.dla_core",
                          fix="use 0, 1 or null")
    if not 0 <= level <= 5:
        raise ConfigError(f"builder_optimization_level {level} is outside 0-5",
                          where="tensorrt.builder_optimization_level", fix="use 0-5 (3 is TensorRT's default)")


def _network_flags(trt: Any) -> int:
    """Explicit batch: required (and the only mode) from TensorRT 10; a flag before it."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 0 if flag is None else 1 << int(flag)


def _first(value: Any, default: int) -> int:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else default
    return int(value) if value is not None else default


def _entropy_calibrator(trt: Any, torch: Any, images: list[str | os.PathLike[str]], *, imgsz: int, batch: int,
                        input_name: str, cache_path: Path) -> Any:
    """A trt.IInt8EntropyCalibrator2 over letterboxed images (the same preprocessing as inference), with a cache."""
    from mlcore.optimization.calibration import CalibrationReader

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.cache_path = cache_path
            self.reader = CalibrationReader(images, imgsz=imgsz, input_name=input_name,
                                            batch_size=min(batch, max(len(images), 1))) if images else None
            self.device_batch: Any = None

        def get_batch_size(self) -> int:
            return self.reader.batch_size if self.reader else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            data = self.reader.get_next() if self.reader else None
            if data is None:
                return None
            self.device_batch = torch.from_numpy(data[input_name]).cuda()  # kept alive until the next call
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return self.cache_path.read_bytes() if self.cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            with atomic_open(self.cache_path, "wb") as handle:
                handle.write(bytes(cache))

    return EntropyCalibrator()


def _write_engine_sidecar(engine_path: Path, metadata: dict[str, Any], imgsz: int) -> None:
    """Class names, imgsz and task beside the engine (mlcore.inference reads `<engine>.json`)."""
    from mlcore.io import write_json_atomic

    names = metadata.get("names") or {}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    write_json_atomic(engine_path.with_name(engine_path.name + ".json"),
                      {"names": {int(key): str(value) for key, value in names.items()}, "imgsz": [imgsz, imgsz],
                       "task": metadata.get("task", "detect"), "stride": metadata.get("stride")})


__all__ = ["TENSORRT_MISSING_FIX", "TensorRTBuild", "convert_to_tensorrt", "import_tensorrt", "tensorrt_available"]
