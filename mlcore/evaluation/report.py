"""The comparison report: teacher, student and each export side by side (report.md, report.json, report.png).

Each entry brings what was measured about one model (accuracy, speed, memory, file size); every ratio is against one
baseline entry (the first unless named): size x, latency x, speed-up x and mAP change in points.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcore.evaluation.evaluate import EvaluationResult
from mlcore.evaluation.memory import MemoryResult
from mlcore.evaluation.speed import SpeedResult, environment
from mlcore.io import atomic_open, write_json_atomic, write_text_atomic

COLUMNS = ("name", "format", "size_mb", "map50_95", "map50", "mask_map50_95", "mask_map50", "p50_ms", "p95_ms",
           "fps", "peak_rss_mb", "peak_gpu_mb", "size_ratio", "latency_ratio", "speedup", "map_delta",
           "mask_map_delta")
_HEADERS = {"name": "model", "format": "format", "size_mb": "size MB", "map50_95": "mAP50-95", "map50": "mAP50",
            "mask_map50_95": "mask mAP50-95", "mask_map50": "mask mAP50", "p50_ms": "p50 ms", "p95_ms": "p95 ms",
            "fps": "FPS", "peak_rss_mb": "peak RSS MB", "peak_gpu_mb": "peak GPU MB", "size_ratio": "size x",
            "latency_ratio": "latency x", "speedup": "speed-up x", "map_delta": "ΔmAP pts",
            "mask_map_delta": "Δmask mAP pts"}


@dataclass
class ReportEntry:
    """One model in the comparison. format: teacher, pytorch, onnx, onnx-int8, tensorrt, ... (free text).

    path: the model file or folder (size_mb is measured from it when not given). accuracy: an EvaluationResult or
    its flat metrics (map50_95, map50, mask_map50_95, mask_map50).
    """

    name: str
    format: str
    path: str | os.PathLike[str] | None = None
    size_mb: float | None = None
    accuracy: EvaluationResult | Mapping[str, float | None] | None = None
    speed: SpeedResult | None = None
    memory: MemoryResult | None = None
    notes: str = ""

    def metrics(self) -> dict[str, float | None]:
        if self.accuracy is None:
            return {}
        return dict(self.accuracy.metrics() if isinstance(self.accuracy, EvaluationResult) else self.accuracy)

    def file_size_mb(self) -> float | None:
        if self.size_mb is not None:
            return float(self.size_mb)
        return None if self.path is None else size_mb(self.path)


@dataclass
class ComparisonReport:
    """The rows as written, which one is the baseline, and the files."""

    rows: list[dict[str, Any]]
    baseline: str
    batch_size: int
    files: dict[str, Path] = field(default_factory=dict)


def comparison_report(entries: Sequence[ReportEntry], output_dir: str | os.PathLike[str], *,
                      baseline: str | None = None, batch_size: int = 1,
                      title: str = "Model comparison") -> ComparisonReport:
    """Write report.md, report.json and report.png (latency and accuracy bars) into output_dir.

    baseline: the name of the entry ratios are taken against (default: the first). batch_size: the batch size whose
    latency the main table shows (every measured batch size is in its own table and in the JSON).
    """
    if not entries:
        raise ValueError("comparison_report needs at least one entry")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"entry names must be unique, got {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the entries {names}")
    rows = [_row(entry, batch_size) for entry in entries]
    base = rows[names.index(baseline)]
    for row in rows:
        row.update(_ratios(row, base))
    output_dir = Path(output_dir)
    report = ComparisonReport(rows, baseline, batch_size)
    env = environment()
    report.files["json"] = output_dir / "report.json"
    write_json_atomic(report.files["json"], {
        "title": title, "baseline": baseline, "batch_size": batch_size, "columns": list(COLUMNS),
        "environment": env, "rows": rows, "entries": [_entry_dict(entry) for entry in entries]})
    report.files["markdown"] = output_dir / "report.md"
    write_text_atomic(report.files["markdown"], _markdown(title, entries, rows, baseline, batch_size, env))
    report.files["plot"] = _plot(rows, output_dir / "report.png", batch_size)
    return report


def size_mb(path: str | os.PathLike[str]) -> float | None:
    """A file's size, or a folder's total (TensorRT plans, ONNX external data), in MB; None when missing."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / 1e6
    return None


def _row(entry: ReportEntry, batch_size: int) -> dict[str, Any]:
    metrics = entry.metrics()
    speed = entry.speed.at(batch_size) if entry.speed else None
    return {"name": entry.name, "format": entry.format, "size_mb": entry.file_size_mb(),
            "map50_95": metrics.get("map50_95"), "map50": metrics.get("map50"),
            "mask_map50_95": metrics.get("mask_map50_95"), "mask_map50": metrics.get("mask_map50"),
            "p50_ms": speed.p50_ms if speed else None, "p95_ms": speed.p95_ms if speed else None,
            "fps": speed.fps if speed else None,
            "peak_rss_mb": entry.memory.peak_rss_mb if entry.memory else None,
            "peak_gpu_mb": entry.memory.peak_gpu_mb if entry.memory else None}


def _ratios(row: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, float | None]:
    def ratio(key: str, inverse: bool = False) -> float | None:
        mine, theirs = row.get(key), base.get(key)
        if mine is None or theirs is None or not (theirs if not inverse else mine):
            return None
        return theirs / mine if inverse else mine / theirs

    def delta(key: str) -> float | None:
        mine, theirs = row.get(key), base.get(key)
        return None if mine is None or theirs is None else (mine - theirs) * 100.0

    return {"size_ratio": ratio("size_mb"), "latency_ratio": ratio("p50_ms"), "speedup": ratio("p50_ms", True),
            "map_delta": delta("map50_95"), "mask_map_delta": delta("mask_map50_95")}


def _entry_dict(entry: ReportEntry) -> dict[str, Any]:
    accuracy: Any = None
    if isinstance(entry.accuracy, EvaluationResult):
        accuracy = {**entry.accuracy.metrics(), "per_class": entry.accuracy.per_class,
                    "num_images": entry.accuracy.num_images, "settings": entry.accuracy.settings}
    elif entry.accuracy is not None:
        accuracy = dict(entry.accuracy)
    return {"name": entry.name, "format": entry.format, "path": None if entry.path is None else str(entry.path),
            "size_mb": entry.file_size_mb(), "accuracy": accuracy,
            "speed": entry.speed.to_dict() if entry.speed else None,
            "memory": entry.memory.to_dict() if entry.memory else None, "notes": entry.notes}


def _markdown(title: str, entries: Sequence[ReportEntry], rows: Sequence[Mapping[str, Any]], baseline: str,
              batch_size: int, env: Mapping[str, Any]) -> str:
    columns = [column for column in COLUMNS if any(row.get(column) is not None for row in rows)]
    lines = [f"# {title}", "", f"Baseline: **{baseline}**; latency at batch {batch_size} (end to end: preprocessing, "
             f"inference, NMS, masks). Ratios: x = this / baseline; speed-up = baseline / this; Δ in mAP points.",
             "", _environment_line(env), "",
             "| " + " | ".join(_HEADERS[column] for column in columns) + " |",
             "|" + "|".join("---" if column in ("name", "format") else "---:" for column in columns) + "|"]
    lines += ["| " + " | ".join(_cell(column, row.get(column)) for column in columns) + " |" for row in rows]
    batch_sizes = sorted({batch.batch_size for entry in entries if entry.speed for batch in entry.speed.batches})
    if batch_sizes:
        lines += ["", "## Latency by batch size (p50 / p95 ms, FPS)", "",
                  "| model | device | " + " | ".join(f"batch {size}" for size in batch_sizes) + " |",
                  "|---|---|" + "---:|" * len(batch_sizes)]
        for entry in entries:
            if entry.speed is None:
                continue
            cells = []
            for size in batch_sizes:
                batch = entry.speed.at(size)
                cells.append("–" if batch is None else f"{batch.p50_ms:.1f} / {batch.p95_ms:.1f}, {batch.fps:.1f}")
            lines.append(f"| {entry.name} | {entry.speed.device} | " + " | ".join(cells) + " |")
    notes = [f"- **{entry.name}**: {entry.notes}" for entry in entries if entry.notes]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def _environment_line(env: Mapping[str, Any]) -> str:
    parts = [f"CPU: {env.get('processor')} ({env.get('cpu_count')} cores)"]
    if env.get("gpu"):
        parts.append(f"GPU: {env['gpu']} (CUDA {env.get('cuda')})")
    parts += [f"{module} {env[module]}" for module in ("torch", "onnxruntime", "tensorrt") if module in env]
    return "Measured on " + "; ".join(parts) + "."


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if column in ("map50_95", "map50", "mask_map50_95", "mask_map50"):
        return f"{value:.4f}"
    if column in ("map_delta", "mask_map_delta"):
        return f"{value:+.2f}"
    if column in ("size_ratio", "latency_ratio", "speedup"):
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _plot(rows: Sequence[Mapping[str, Any]], path: Path, batch_size: int) -> Path:
    """Two bar charts side by side: p50 latency (p95 as a whisker) and mAP50-95 (boxes, masks where measured)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [row["name"] for row in rows]
    positions = np.arange(len(rows))
    figure = Figure(figsize=(11, 0.6 * len(rows) + 2.5), dpi=110)
    FigureCanvasAgg(figure)
    latency, accuracy = figure.subplots(1, 2, sharey=True)
    p50 = np.array([row["p50_ms"] or 0.0 for row in rows])
    p95 = np.array([row["p95_ms"] or row["p50_ms"] or 0.0 for row in rows])
    latency.barh(positions, p50, xerr=[np.zeros_like(p50), p95 - p50], color="tab:blue", capsize=3)
    latency.set(yticks=positions, yticklabels=names, xlabel=f"latency ms (p50, whisker p95), batch {batch_size}")
    latency.invert_yaxis()
    height = 0.4
    box = np.array([row["map50_95"] or 0.0 for row in rows])
    masks = any(row["mask_map50_95"] is not None for row in rows)
    accuracy.barh(positions - (height / 2 if masks else 0), box, height=height if masks else 0.8, label="boxes",
                  color="tab:green")
    if masks:
        accuracy.barh(positions + height / 2, [row["mask_map50_95"] or 0.0 for row in rows], height=height,
                      label="masks", color="tab:orange")
        accuracy.legend(loc="lower right", fontsize=8)
    accuracy.set(xlabel="mAP50-95", xlim=(0, max(1.0, float(box.max()) * 1.05)))
    for axes in (latency, accuracy):
        axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path
