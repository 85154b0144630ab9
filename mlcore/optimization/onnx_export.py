"""PyTorch student -> ONNX through ultralytics' own exporter, then checked: one image input, a valid graph, the
metadata engines read (names, imgsz, task, stride), and the same numbers as PyTorch on real images.

ultralytics' exporter is used (not a hand-written torch.onnx call) because it puts the head in export mode exactly as
its own runtimes expect and writes the metadata `ONNXEngine` reads. Its `dynamic=True` makes batch, height and width
variable; mlcore fixes height and width back to imgsz (the letterbox always produces imgsz x imgsz), so only the
batch stays variable and runtimes can fold the anchor grid. The box head's inner-axis Softmax is rewritten into ops
ONNX Runtime runs fast (graph_rewrites.py); the parity check covers the rewritten graph.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open
from mlcore.logs import get_logger
from mlcore.optimization.graph_rewrites import decompose_inner_softmax
from mlcore.preprocess.inputs import ImageInput
from mlcore.students.student import Student

log = get_logger(__name__)

MIN_OPSET = 13
REQUIRED_METADATA = ("names", "imgsz", "task", "stride")  # what engines read from the file itself
_NOISE_SEED = 0


@dataclass(frozen=True)
class OutputParity:
    """Largest absolute difference between ONNX Runtime and PyTorch on the same letterboxed images.

    outputs: per ONNX output name; boxes / scores: the box (xywh, input pixels) and class-score rows of output0;
    relative: max difference over the largest |value| of that output (scale-free).
    """

    images: int
    inputs: str  # "images" (real files / arrays) or "noise" (none were given)
    outputs: dict[str, float]
    boxes: float
    scores: float
    relative: dict[str, float]

    @property
    def max_abs_diff(self) -> float:
        return max(self.outputs.values(), default=0.0)


@dataclass(frozen=True)
class OnnxExport:
    """What `export_to_onnx` wrote and checked."""

    path: Path
    opset: int
    imgsz: int
    task: str
    class_names: list[str]
    stride: int
    input_name: str
    input_shape: list[int | str]
    output_names: list[str]
    dynamic_batch: bool
    size_bytes: int
    parity: OutputParity | None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["path"] = str(self.path)
        record["parity"] = None if self.parity is None else {**asdict(self.parity),
                                                             "max_abs_diff": self.parity.max_abs_diff}
        record.pop("metadata")
        return record


def export_to_onnx(student_or_pt_path: Student | str | os.PathLike[str], output_path: str | os.PathLike[str], *,
                   imgsz: int = 640, opset: int = 17, dynamic_batch: bool = True, simplify: bool = False,
                   parity_images: Sequence[ImageInput] | None = None) -> OnnxExport:
    """Export a student (or its .pt checkpoint) to ONNX at output_path (written atomically) and check it.

    parity_images: real images to compare ONNX Runtime with PyTorch on (letterboxed by mlcore's YOLO preprocessor);
    None compares on seeded noise and says so in the result. Raises ModelError when the graph does not have exactly
    one image input or lacks the metadata engines need.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is older than {MIN_OPSET}", where="onnx.opset",
                          fix=f"use opset {MIN_OPSET} or newer (17 is read by ONNX Runtime and TensorRT 8.6+)")
    if simplify:
        _require_onnxslim()
    import onnx

    output_path = Path(output_path)
    with tempfile.TemporaryDirectory(prefix="mlcore-onnx-") as tmp:
        checkpoint = _as_checkpoint(student_or_pt_path, Path(tmp), imgsz)
        reference = Student.load(checkpoint)  # the weights the exporter reads, in fp32
        if imgsz <= 0 or imgsz % reference.stride:
            raise ConfigError(f"imgsz {imgsz} is not a positive multiple of the student's stride {reference.stride}",
                              where="imgsz", fix=f"use e.g. {max(imgsz // reference.stride, 1) * reference.stride}")
        exported = _ultralytics_export(checkpoint, reference.task, imgsz=imgsz, opset=opset,
                                       dynamic=dynamic_batch, simplify=simplify)
        model = onnx.load_model_from_string(exported)
    image_input = check_single_image_input(model, where=str(output_path))
    if dynamic_batch:
        _fix_spatial_dims(image_input, imgsz)
    decompose_inner_softmax(model)  # the box head's DFL softmax: exact, ~15x faster in ONNX Runtime
    metadata = onnx_metadata(model)
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelError(f"the exported model lacks metadata {missing}", where=str(output_path),
                         fix="export with ultralytics' exporter (this ultralytics version did not write them)")
    data = model.SerializeToString()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"onnx.checker rejected the exported graph: {exc}", where=str(output_path),
                         fix="try another opset (onnx.opset), or report the ultralytics/torch versions") from None
    parity = onnx_parity(data, reference, imgsz=imgsz, images=parity_images)
    with atomic_open(output_path, "wb") as handle:
        handle.write(data)
    shape = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param
             for dim in image_input.type.tensor_type.shape.dim]
    log.info("ONNX export %s: opset %d, input %s, largest difference to PyTorch %.2e", output_path, opset, shape,
             parity.max_abs_diff)
    return OnnxExport(path=output_path, opset=opset, imgsz=imgsz, task=reference.task,
                      class_names=list(reference.class_names), stride=reference.stride, input_name=image_input.name,
                      input_shape=shape, output_names=[output.name for output in model.graph.output],
                      dynamic_batch=dynamic_batch, size_bytes=output_path.stat().st_size, parity=parity,
                      metadata=metadata)


def check_single_image_input(model: Any, *, where: str = "model") -> Any:
    """The graph's one input, which must be a 4-D float image (N, 3, H, W); anything else is a ModelError.

    model: an onnx.ModelProto or a path. Inputs that are also initializers (weights, in old exports) are not inputs.
    """
    import onnx

    if not hasattr(model, "graph"):
        model = onnx.load(str(model), load_external_data=False)
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(value.name for value in inputs) or "none"
        raise ModelError(f"the ONNX graph has {len(inputs)} inputs ({names}); a student takes exactly one image "
                         "input, without prompts", where=where,
                         fix="export a prompt-free student (YOLOv8 / YOLOv8-seg / FastSAM) with `mlcore optimize`")
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    channels = dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None
    if tensor.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) or len(dims) != 4 or channels != 3:
        raise ModelError(f"the ONNX input {inputs[0].name!r} is not a (N, 3, H, W) float image", where=where,
                         fix="export the student with `mlcore optimize`")
    return inputs[0]


def onnx_metadata(model: Any) -> dict[str, str]:
    """metadata_props as a dict (ultralytics writes names, imgsz, task, stride, ... as Python literals)."""
    import onnx

    if not hasattr(model, "metadata_props"):
        model = onnx.load(str(model), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def parse_metadata_value(value: str) -> Any:
    """A metadata value as Python data ("{0: 'cat'}" -> dict, "[160, 160]" -> list), else the string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def onnx_parity(model: bytes | str | os.PathLike[str], reference: Student, *, imgsz: int,
                images: Sequence[ImageInput] | None = None) -> OutputParity:
    """Run ONNX Runtime and the PyTorch model on the same letterboxed batch; the largest differences.

    All images go through the graph as one batch (which also exercises a dynamic batch axis, when there is one).
    """
    import onnxruntime

    if images:
        pixel_values = reference.preprocessor(imgsz)(list(images)).pixel_values
        kind = "images"
    else:
        generator = torch.Generator().manual_seed(_NOISE_SEED)
        pixel_values = torch.rand(1, 3, imgsz, imgsz, generator=generator)
        kind = "noise"
    session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                           providers=["CPUExecutionProvider"])
    batch_dim = session.get_inputs()[0].shape[0]
    if isinstance(batch_dim, int) and batch_dim != pixel_values.shape[0]:
        pixel_values = pixel_values[:batch_dim] if pixel_values.shape[0] >= batch_dim else pixel_values[:1]
    got = session.run(None, {session.get_inputs()[0].name: pixel_values.numpy()})
    reference.model.eval()
    with torch.no_grad():
        head = reference.model(pixel_values)[0]
    expected = [head[0], head[1]] if reference.task == "segment" else [head]
    if len(got) != len(expected):
        raise ModelError(f"ONNX Runtime returned {len(got)} outputs, PyTorch {len(expected)}", where="onnx parity",
                         fix="re-export; the graph does not match the student")
    names = [output.name for output in session.get_outputs()]
    outputs: dict[str, float] = {}
    relative: dict[str, float] = {}
    for name, onnx_value, torch_value in zip(names, got, expected):
        want = torch_value.numpy()
        if onnx_value.shape != want.shape:
            raise ModelError(f"output {name} has shape {onnx_value.shape} in ONNX, {want.shape} in PyTorch",
                             where="onnx parity", fix="re-export; the graph does not match the student")
        difference = np.abs(onnx_value.astype(np.float64) - want)
        outputs[name] = float(difference.max()) if difference.size else 0.0
        relative[name] = outputs[name] / max(float(np.abs(want).max()), 1e-12)
    nc = reference.num_classes
    first = np.abs(got[0].astype(np.float64) - expected[0].numpy())
    return OutputParity(images=int(pixel_values.shape[0]), inputs=kind, outputs=outputs,
                        boxes=float(first[:, :4].max()), scores=float(first[:, 4:4 + nc].max()), relative=relative)


def _as_checkpoint(source: Student | str | os.PathLike[str], tmp: Path, imgsz: int) -> Path:
    """A .pt the exporter can read: the given file, or the student saved (fp16, as every checkpoint) into tmp."""
    if isinstance(source, Student):
        return source.save(tmp / "student.pt", imgsz=imgsz)
    path = Path(source)
    if not path.is_file():
        raise ModelError("model checkpoint not found", where=str(path),
                         fix="give the path of a student .pt (e.g. runs/student/best.pt)")
    if path.suffix != ".pt":
        raise ModelError(f"expected a PyTorch .pt checkpoint, got {path.suffix or 'no suffix'}", where=str(path),
                         fix="give the student's .pt checkpoint")
    return path


def _ultralytics_export(checkpoint: Path, task: str, *, imgsz: int, opset: int, dynamic: bool,
                        simplify: bool) -> bytes:
    """The serialized graph from ultralytics' exporter, run on a private copy of the checkpoint (it writes beside
    its input)."""
    from mlcore.students.ultralytics_setup import quiet_ultralytics, ultralytics_module

    ultralytics = ultralytics_module()
    with tempfile.TemporaryDirectory(prefix="mlcore-export-") as tmp:
        copy = Path(tmp) / "model.pt"
        copy.write_bytes(checkpoint.read_bytes())
        threads = torch.get_num_threads()  # its select_device("cpu") leaves torch on cpu_count - 1 threads
        try:
            with quiet_ultralytics():
                exported = ultralytics.YOLO(str(copy), task=task).export(
                    format="onnx", imgsz=imgsz, opset=opset, dynamic=dynamic, simplify=simplify, batch=1,
                    device="cpu", verbose=False)
        except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
            raise ModelError(f"ultralytics could not export the model to ONNX: {str(exc).strip()[:300]}",
                             where=str(checkpoint), fix="check the opset (13-20 for torch's exporter)") from None
        finally:
            torch.set_num_threads(threads)
        return Path(exported).read_bytes()


def _fix_spatial_dims(image_input: Any, imgsz: int) -> None:
    """Batch stays variable; height and width become imgsz (the letterbox always produces imgsz x imgsz)."""
    dims = image_input.type.tensor_type.shape.dim
    for index in (2, 3):
        dims[index].Clear()
        dims[index].dim_value = imgsz


def _require_onnxslim() -> None:
    try:
        import onnxslim  # noqa: F401
    except ImportError:
        raise ConfigError("simplify needs onnxslim, which is not installed", where="simplify",
                          fix="pip install onnxslim, or export with simplify=False (ONNX Runtime folds constants "
                              "itself)") from None


__all__ = ["OnnxExport", "OutputParity", "check_single_image_input", "export_to_onnx", "onnx_metadata",
           "onnx_parity", "parse_metadata_value"]
