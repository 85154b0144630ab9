"""What an exported model must tell its engine: class names, input size and task.

Read, in order of precedence, from what the caller passes (class_names=, imgsz=), what the file carries (ultralytics'
exporter writes `names`, `imgsz`, `task`, `stride` into an ONNX model's metadata_props and into a JSON header ahead of
a TensorRT engine), and a sidecar `<model file>.json` beside the file (`write_sidecar`; for engines built by tools
that embed nothing). Missing pieces are ModelErrors that say which argument to pass.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcore.errors import ModelError
from mlcore.inference.types import TASKS
from mlcore.io import write_json_atomic


@dataclass(frozen=True)
class ModelMetadata:
    """class_names: index -> name; imgsz: square input side; task: detect | segment."""

    class_names: list[str]
    imgsz: int
    task: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """`model.engine` -> `model.engine.json` (one sidecar per file, so model.onnx and model.int8.onnx keep theirs)."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def write_sidecar(model_path: str | os.PathLike[str], metadata: ModelMetadata) -> Path:
    """Write the metadata beside a model file, in the keys ultralytics uses (names as index -> name)."""
    target = sidecar_path(model_path)
    write_json_atomic(target, {"names": dict(enumerate(metadata.class_names)), "imgsz": [metadata.imgsz] * 2,
                               "task": metadata.task})
    return target


def read_sidecar(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar's raw mapping, {} when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelError(f"the model's metadata sidecar cannot be read: {exc}", where=str(path),
                         fix="fix or delete the file (or pass class_names= and imgsz=)") from None
    return data if isinstance(data, dict) else {}


def parse_exporter_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """ultralytics writes metadata values as Python literals in ONNX ("{0: 'cat'}", "[640, 640]"): parse those."""
    parsed = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in ("names", "imgsz", "args", "end2end", "batch", "stride"):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        parsed[key] = value
    return parsed


def resolve_metadata(embedded: Mapping[str, Any], model_path: str | os.PathLike[str], *,
                     class_names: Sequence[str] | None, imgsz: int | None, input_hw: tuple[int | None, int | None],
                     fallback_task: str | None = None) -> ModelMetadata:
    """Caller's values over the file's over the sidecar's.

    input_hw: the input's static (H, W), None where dynamic (a fixed square input gives imgsz); fallback_task: the
    task read off the outputs (prototypes mean segment), used when no metadata names one.
    """
    where = str(model_path)
    found = {**read_sidecar(model_path), **{key: value for key, value in embedded.items() if value is not None}}
    names = list(class_names) if class_names is not None else _names(found.get("names"), where)
    if not names:
        raise ModelError("the model carries no class names (no ultralytics 'names' metadata, no sidecar "
                         f"{sidecar_path(model_path).name})", where=where,
                         fix="pass class_names=[...] in the model's class-index order (CLI: --class-names), or "
                             "export with mlcore / ultralytics, which embed them")
    size = imgsz if imgsz is not None else _square(found.get("imgsz"), where)
    if size is None:
        height, width = input_hw
        if height is not None and height == width:
            size = height
    if size is None:
        raise ModelError("the model's input size is unknown (no 'imgsz' metadata and a dynamic input shape)",
                         where=where, fix="pass imgsz=<the size it was exported at>, e.g. imgsz=640")
    size = int(size)
    if any(side is not None and side != size for side in input_hw):
        raise ModelError(f"imgsz {size} does not fit the model's fixed input {list(input_hw)}", where=where,
                         fix=f"pass imgsz={input_hw[0]} (or re-export at the size you want)")
    kind = str(found.get("task") or fallback_task or "")
    if kind not in TASKS:
        raise ModelError(f"the model's task is {kind!r}: engines run 'detect' and 'segment' models" if kind
                         else "the model's task is unknown", where=where,
                         fix="use a YOLOv8 detection or segmentation export")
    return ModelMetadata(class_names=[str(name) for name in names], imgsz=size, task=kind)


def check_end_to_end(embedded: Mapping[str, Any], where: str) -> None:
    """Exports with NMS inside (nms=True / end2end) emit final boxes, not what the shared post-processing reads."""
    args = embedded.get("args")
    if embedded.get("end2end") is True or (isinstance(args, Mapping) and args.get("nms") is True):
        raise ModelError("the model was exported with NMS inside (end2end); mlcore engines apply NMS themselves",
                         where=where, fix="export again without nms=True (mlcore optimize does)")


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        try:
            indexed = {int(key): str(name) for key, name in value.items()}
        except (TypeError, ValueError):
            indexed = {}
        if sorted(indexed) != list(range(len(indexed))):
            raise ModelError(f"the model's class names are not indexed 0..n-1: {value!r}", where=where,
                             fix="pass class_names=[...] in the model's class-index order")
        return [indexed[index] for index in range(len(indexed))]
    if isinstance(value, (list, tuple)):
        return [str(name) for name in value]
    raise ModelError(f"unreadable class names in the model's metadata: {value!r}", where=where,
                     fix="pass class_names=[...] in the model's class-index order")


def _square(value: Any, where: str) -> int | None:
    if value is None:
        return None
    sides = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else []
    if not sides or len(set(sides)) != 1 or not all(isinstance(side, int) for side in sides):
        raise ModelError(f"the model's input size {value!r} is not square; mlcore letterboxes to a square",
                         where=where, fix="export at a square imgsz (e.g. 640)")
    return int(sides[0])
