"""A checkpoint's own input settings: Hugging Face's `preprocessor_config.json` as a preprocessing section.

A derived checkpoint (a medical SAM, a Grounding DINO fine-tuned at another size) may resize or normalise otherwise
than the stock one, and feeding it the stock inputs degrades it without any error. The teacher loaders read this file
from the weights folder and use its values over the preset's defaults; what mlcore cannot reproduce is reported.

Mapped: `size` (shortest_edge / longest_edge, or the older int with `max_size`), `pad_size` (SAM), `do_rescale` +
`rescale_factor`, `do_normalize` + `image_mean` / `image_std`, `resample`, `do_resize`. Mean and std are expressed on
the preset's rescale scale, so the stock SAM file (0.485 on a 0-1 scale) reads as the preset's 123.675 on 0-255 and
counts as unchanged. Only bilinear resampling is reproduced (the filter of every stock checkpoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlcore.config.schemas.data import ImagePreprocessing
from mlcore.errors import ModelError

PROCESSOR_CONFIG = "preprocessor_config.json"
# PIL's resampling filters by the numbers transformers stores.
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CheckpointPreprocessing:
    """What a checkpoint's preprocessor_config.json changes against a baseline (the preset's section)."""

    source: Path
    values: dict[str, Any]  # preprocessing keys whose value differs from the baseline: use these
    differences: tuple[str, ...]  # the same, for a person: "mean (123.675, ...) -> (127.5, ...)"
    unsupported: tuple[str, ...]  # settings mlcore does not reproduce


def read_processor_config(folder: str | Path, baseline: ImagePreprocessing) -> CheckpointPreprocessing | None:
    """The file in `folder` mapped onto `baseline` (None when the folder has none); a malformed file or values that
    make no valid preprocessing are a ModelError naming the file."""
    path = Path(folder) / PROCESSOR_CONFIG
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        wanted, unsupported = _mapped(raw, baseline)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{PROCESSOR_CONFIG} cannot be read: {exc}", where=str(path),
                         fix="restore the file from the checkpoint's source (or delete it to use the preset's inputs)"
                         ) from None
    current = baseline.model_dump()
    values = {key: value for key, value in wanted.items() if not _same(current[key], value)}
    try:
        type(baseline).model_validate({**current, **values})
    except ValidationError as exc:
        raise ModelError(f"{PROCESSOR_CONFIG} gives unusable inputs: {exc.errors()[0]['msg']}", where=str(path),
                         fix="correct the file's size / mean / std") from None
    differences = tuple(f"{key} {_show(current[key])} -> {_show(value)}" for key, value in values.items())
    return CheckpointPreprocessing(path, values, differences, tuple(unsupported))


def _mapped(raw: dict[str, Any], baseline: ImagePreprocessing) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    unsupported: list[str] = []
    if raw.get("do_resize", True) is False:
        unsupported.append("do_resize: false (mlcore always resizes to the model's input size)")
    values.update(_sizes(raw, baseline, unsupported))
    resample = raw.get("resample")
    name = PIL_FILTERS.get(resample, str(resample).lower()) if resample is not None else "bilinear"
    if name not in ("bilinear", "2"):
        unsupported.append(f"resample: {resample} ({name}); mlcore resizes with antialiased bilinear, so inputs "
                           "differ slightly from this checkpoint's own processor")
    rescale = float(raw.get("rescale_factor", 1 / 255)) if raw.get("do_rescale", True) else 1.0
    if raw.get("do_normalize", True):
        mean, std = raw.get("image_mean"), raw.get("image_std")
    else:
        mean, std = 0.0, 1.0
    # (x * r - m) / s == (x * r_b - m * r_b / r) / (s * r_b / r): the same inputs on the baseline's rescale scale.
    scale = baseline.rescale_factor / rescale
    if mean is not None:
        values["mean"] = tuple(value * scale for value in _rgb(mean))
    if std is not None:
        values["std"] = tuple(value * scale for value in _rgb(std))
    return values, unsupported


def _sizes(raw: dict[str, Any], baseline: ImagePreprocessing, unsupported: list[str]) -> dict[str, Any]:
    size, values = raw.get("size"), {}
    if isinstance(size, int):  # older processors: the short side, with max_size as the long-side cap
        size = {"shortest_edge": size, **({"longest_edge": raw["max_size"]} if raw.get("max_size") else {})}
    if isinstance(size, dict):
        if "height" in size or "width" in size:
            unsupported.append(f"size {size} (a fixed resize; mlcore keeps the aspect ratio)")
        if baseline.strategy == "keep_aspect_ratio" and "shortest_edge" in size:
            values["shortest_edge"] = int(size["shortest_edge"])
        if "longest_edge" in size:
            values["longest_edge"] = int(size["longest_edge"])
    pad = raw.get("pad_size")
    if isinstance(pad, dict) and baseline.pad_to is not None and {"height", "width"} <= set(pad):
        values["pad_to"] = (int(pad["height"]), int(pad["width"]))
    return values


def _rgb(value: Any) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {value!r}")
    return values[0], values[1], values[2]


def _same(current: Any, value: Any) -> bool:
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return len(current) == len(value) and all(_same(a, b) for a, b in zip(current, value))
    if isinstance(current, (int, float)) and isinstance(value, (int, float)):
        return abs(current - value) <= _RELATIVE_TOLERANCE * max(1.0, abs(current))
    return current == value


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
