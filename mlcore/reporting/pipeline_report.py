"""The training pipeline's run report: dataset, mode, teachers, student, exports, the accuracy gate, speed, paths.

    files = write_pipeline_report(run, run.run_dir)   # report.md and report.html

`PipelineRun` collects what each stage returned; `pipeline_document` turns it into a `Document`, so the Prefect
artifact (markdown), report.md and report.html are the same text. Missing stages (a run that stopped early, a
benchmark that was skipped) leave their section out rather than failing.

The report is written before the run is stored (it is stored with it), so its "Stored copy" section first says
"being stored"; the store step re-renders the same document with the outcome (`with_store_status`), from the
document kept as JSON (`document_to_json`), so `mlcore store` can do it later without the stages' records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlcore.data.prepare import DatasetReport
from mlcore.io import write_text_atomic
from mlcore.reporting.document import Bullets, Document, Image, Paragraph, Section, Table, to_html, to_markdown
from mlcore.reporting.prediction_grid import prediction_grid
from mlcore.reporting.training_curves import Curve, training_curves

if TYPE_CHECKING:  # the report reads these records; importing them would pull in torch for nothing
    from mlcore.distill.records import DistillationResult
    from mlcore.finetune.records import TeacherTrainingResult
    from mlcore.optimization.optimize import OptimizationResult

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
STORE_SECTION = "Stored copy"
METRIC_COLUMNS = ("map50_95", "map50", "mask_map50_95", "mask_map50")
METRIC_HEADERS = ("mAP50-95", "mAP50", "mask mAP50-95", "mask mAP50")
PICTURES_DIR = "pictures"
PATH_SETTINGS = frozenset({"data", "val", "test", "images", "unlabeled", "output", "store"})  # listed below the settings table


@dataclass
class ModelScores:
    """One model's accuracy on the test split: what the evaluate stage returns for each model."""

    name: str  # teachers, best.pt, model.onnx, model.int8.onnx, ...
    kind: str  # teachers | pytorch | onnx | onnx-int8 | ...
    path: str
    metrics: dict[str, float | None]
    num_images: int
    output_dir: str | None = None
    seconds: float = 0.0


@dataclass
class StageRecord:
    """How one stage went in this run: ran, cached (a finished earlier run's result was reused) or failed."""

    name: str
    status: str
    seconds: float


@dataclass
class StoreStatus:
    """What the report says about the run's copy in the artifact store."""

    state: Literal["pending", "stored", "not stored"]
    url: str  # the run's folder in the store: a path or s3://bucket/prefix/<run-id>
    detail: str = ""  # stored: what was stored; not stored: why
    fix: str | None = None  # not stored: how to remove the cause
    command: str | None = None  # the command that stores the run folder later (finishing an interrupted store)


@dataclass
class PipelineRun:
    """Everything the report shows; the stages' own records, as they returned them."""

    run_dir: Path
    dataset: DatasetReport
    settings: dict[str, Any]
    splits: dict[str, str]
    code_version: str = ""
    teachers: TeacherTrainingResult | None = None
    student: DistillationResult | None = None
    export: OptimizationResult | None = None
    scores: list[ModelScores] = field(default_factory=list)
    benchmark_rows: list[dict[str, Any]] = field(default_factory=list)
    benchmark_files: dict[str, Path] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    store: StoreStatus | None = None  # the run's copy in the artifact store; None: the run is not stored


def gate_summary(export: OptimizationResult | None) -> str:
    """The accuracy gate's decision in one sentence."""
    if export is None:
        return "no export"
    if export.quantized is None:
        return "no quantization asked for: the float ONNX model ships"
    if export.gate is not None:
        return export.gate.reason  # "passed: ..." / "failed: ...", with the scores and the file kept
    return f"not evaluated ({export.gate_skipped_reason})"


def pipeline_document(run: PipelineRun, *, title: str = "Training pipeline report",
                      pictures: Mapping[str, Path] | None = None) -> Document:
    """The report; the pictures (`draw_report_pictures`, default: those it left in the run folder) are shown where
    their numbers are."""
    pictures = existing_pictures(run) if pictures is None else pictures
    sections = [_overview(run)]
    if run.store is not None:
        sections.append(store_section(run.store))
    sections.append(_dataset(run))
    if run.teachers is not None:
        sections.append(_teachers(run.teachers))
    if run.student is not None:
        sections.append(_student(run.student, run.run_dir))
    if "curves" in pictures:
        sections.append(Section("Training curves", [Image(_relative(pictures["curves"], run.run_dir),
                                                          "loss and validation metric per epoch")]))
    if run.export is not None:
        sections.append(_export(run.export, run.run_dir))
    if run.scores:
        sections.append(_models(run, pictures.get("predictions")))
    if run.stages:
        sections.append(Section("Stages", [Table(["stage", "status", "seconds"],
                                                 [[s.name, s.status, round(s.seconds, 1)] for s in run.stages])]))
    sections.append(_settings(run.settings))
    return Document(title, sections)


def pipeline_markdown(run: PipelineRun) -> str:
    return to_markdown(pipeline_document(run))


def write_pipeline_report(run: PipelineRun, directory: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """report.md and report.html in `directory` (default: the run folder), with the pictures drawn into the run
    folder's pictures/; image links are relative to the run folder."""
    return write_report_document(pipeline_document(run, pictures=draw_report_pictures(run)),
                                 directory or run.run_dir)


PICTURE_FILES = {"curves": "training_curves.png", "predictions": "predictions.png"}


def existing_pictures(run: PipelineRun) -> dict[str, Path]:
    folder = run.run_dir / PICTURES_DIR
    return {name: folder / file for name, file in PICTURE_FILES.items() if (folder / file).is_file()}


def draw_report_pictures(run: PipelineRun) -> dict[str, Path]:
    """The pictures a person would rather look at, drawn from the stages' records into RUN/pictures/: "curves"
    (each teacher's and the student's epochs) and "predictions" (test images: ground truth, the teachers, the
    student and the shipped export side by side). A picture with nothing to draw is left out."""
    folder = run.run_dir / PICTURES_DIR
    for name in PICTURE_FILES.values():  # a rerun that has nothing to draw must not show the last run's picture
        (folder / name).unlink(missing_ok=True)
    pictures: dict[str, Path | None] = {}
    curves = [Curve(family, r.best_metric, r.epochs, r.baseline.get(r.best_metric))
              for family, r in (run.teachers.runs.items() if run.teachers else [])]
    if run.student is not None:
        curves.append(Curve(f"student ({run.student.student})", run.student.best_metric, run.student.epochs))
    pictures["curves"] = training_curves(curves, folder / PICTURE_FILES["curves"])
    shown = {"teachers", "best.pt"} | ({run.export.recommended.name} if run.export is not None else set())
    predictions = {score.name: Path(score.output_dir) / "predictions.json" for score in run.scores
                   if score.name in shown and score.output_dir}
    test = run.splits.get("test")
    if predictions and test:
        pictures["predictions"] = prediction_grid(test, predictions, folder / PICTURE_FILES["predictions"])
    return {name: path for name, path in pictures.items() if path is not None}


def write_report_document(document: Document, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """DOCUMENT as report.md and report.html in `directory`, each replaced atomically."""
    directory = Path(directory)
    files = {"markdown": directory / MARKDOWN_NAME, "html": directory / HTML_NAME}
    write_text_atomic(files["markdown"], to_markdown(document))
    write_text_atomic(files["html"], to_html(document))
    return files


def store_section(status: StoreStatus) -> Section:
    """The report's word on the stored copy: being stored, stored and verified, or not stored (why, and how)."""
    where = f"`{status.url}`"
    if status.state == "stored":
        items = [f"**stored and verified** at {where}"] + ([status.detail] if status.detail else [])
    elif status.state == "not stored":
        items = [f"**not stored** at {where}: without its `manifest.json` nothing there counts as this run"]
        items += [f"why: {status.detail}"] if status.detail else []
        items += [f"fix: {status.fix}"] if status.fix else []
        if status.command:
            items.append(f"the outputs stay in the run folder; to store them later (files already there are not "
                         f"sent again): `{status.command}`")
    else:
        items = [f"being stored at {where} when this report was written (with `manifest.json`: every file's sha256 "
                 f"and the lineage)"]
        if status.command:
            items.append(f"the store step rewrites this section with the outcome; if it still reads so, the store "
                         f"did not finish: `{status.command}`")
    return Section(STORE_SECTION, [Bullets(items)])


def with_store_status(document: Document, status: StoreStatus) -> Document:
    """DOCUMENT with its "Stored copy" section saying STATUS (added after the summary when it has none)."""
    section = store_section(status)
    sections = list(document.sections)
    for index, existing in enumerate(sections):
        if existing.title == STORE_SECTION:
            sections[index] = section
            break
    else:
        sections.insert(min(1, len(sections)), section)
    return Document(document.title, sections)


_BLOCKS: dict[str, type] = {"paragraph": Paragraph, "bullets": Bullets, "table": Table, "image": Image}


def document_to_json(document: Document) -> dict[str, Any]:
    """A report document as plain JSON data (``document_from_json`` reads it back)."""
    kinds = {cls: kind for kind, cls in _BLOCKS.items()}
    return {"title": document.title,
            "sections": [{"title": section.title,
                          "blocks": [{"kind": kinds[type(block)], **_plain(asdict(block))} for block in section.blocks]}
                         for section in document.sections]}


def document_from_json(data: Mapping[str, Any]) -> Document:
    sections = []
    for section in data["sections"]:
        blocks = [_BLOCKS[block["kind"]](**{key: value for key, value in block.items() if key != "kind"})
                  for block in section["blocks"]]
        sections.append(Section(section["title"], blocks))
    return Document(data["title"], sections)


def _plain(value: Any) -> Any:
    """Table cells as JSON keeps them: numbers, text, booleans and None as they are; anything else as text."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _overview(run: PipelineRun) -> Section:
    items = [f"run folder: `{run.run_dir}`"]
    items.append(f"dataset: `{run.dataset.dataset}`")
    source = str(run.settings.get("data") or "")
    if source.startswith("s3://"):
        items.append(f"dataset source: `{source}` (fetched into `{run.run_dir / 'source'}`)")
    items.append(f"mode: **{run.dataset.annotation_mode}**")
    if run.student is not None:
        items.append(f"student: **{run.student.student}**")
    if run.export is not None:
        items += [f"accuracy gate: {gate_summary(run.export)}",
                  f"recommended model: `{_relative(run.export.recommended, run.run_dir)}` "
                  f"({run.export.recommended_reason})"]
    if run.settings.get("teacher_preset") == "tiny":
        items.append("teachers: **tiny presets**, built from configs with random weights: the accuracy numbers "
                     "below show the pipeline working, not model quality")
    elif run.settings.get("teacher_preset") == "shapes":
        items.append("teachers: **shapes presets**, pretrained by mlcore on generated shapes (other domains) "
                     "(docs/DEMO_TEACHERS.md); their score before fine-tuning is zero-shot on this data")
    items.append(f"written: {datetime.now().astimezone().isoformat(timespec='seconds')}"
                 + (f", mlcore {run.code_version}" if run.code_version else ""))
    return Section("Summary", [Bullets(items)])


def _dataset(run: PipelineRun) -> Section:
    report = run.dataset
    stats = report.statistics
    items = [f"file: `{report.dataset}` (sha256 `{report.dataset_sha256[:16]}`)",
             f"images: {stats.images if stats else '-'}, annotations: {stats.annotations if stats else '-'}, "
             f"classes: {report.num_classes}",
             f"findings: {report.counts.get('error', 0)} errors, {report.counts.get('warning', 0)} warnings"]
    items += [f"{name}: `{path}`" + (f" ({report.splits[name]} images)" if name in report.splits else "")
              for name, path in run.splits.items()]
    return Section("Dataset", [Bullets(items)])


def _teachers(result: TeacherTrainingResult) -> Section:
    rows = []
    for family, run in result.runs.items():
        before = run.baseline.get(run.best_metric)
        gain = None if run.best is None or before is None else run.best - before
        rows.append([family, run.preset, run.best_metric, run.best, before, gain, run.best_epoch])
    paths = [f"{family} adapter: `{run.adapter_dir}`" for family, run in result.runs.items()]
    return Section(f"Teachers ({result.mode}, {result.device})", [
        Table(["teacher", "preset", "metric (val)", "best", "before fine-tuning", "gain", "epoch"], rows),
        Bullets(paths + [f"metrics: `{result.metrics_path}`"])])


def _student(result: DistillationResult, run_dir: Path) -> Section:
    return Section("Student", [
        Table(["student", "metric (val)", "best", "epoch", "epochs run", "teacher-labelled images"],
              [[result.student, result.best_metric, result.best, result.best_epoch, len(result.epochs),
                result.teacher_calls]]),
        Paragraph(f"weights: `{_relative(result.best_path, run_dir)}`")])


def _export(result: OptimizationResult, run_dir: Path) -> Section:
    rows = [[entry["name"], entry["format"], entry["precision"], entry["size_mb"]] for entry in result.files]
    blocks: list[Any] = [Table(["file", "format", "precision", "size MB"], rows),
                         Paragraph(f"accuracy gate: {gate_summary(result)}")]
    if result.gate is not None:
        gate = result.gate
        blocks.append(Table(["metric", "float", "quantized", "drop (points)", "allowed", "passed", "kept"],
                            [[gate.metric, gate.float_value, gate.quantized_value, gate.drop, gate.threshold,
                              gate.passed, gate.kept_path.name]]))
    blocks.append(Paragraph(f"export report: `{_relative(result.report_path, run_dir)}`"))
    return Section("Export and quantization", blocks)


def accuracy_table(run: PipelineRun) -> Table:
    """Each model's accuracy on the test split."""
    return Table(["model", "kind", *METRIC_HEADERS],
                 [[score.name, score.kind, *(score.metrics.get(key) for key in METRIC_COLUMNS)]
                  for score in run.scores])


def speed_table(run: PipelineRun) -> Table:
    """Each model's size and latency at batch 1, from the benchmark."""
    speed = {row["name"]: row for row in run.benchmark_rows}
    rows = []
    for score in run.scores:
        timed = speed.get(score.name, {})
        rows.append([score.name, timed.get("size_mb") if timed else _size_mb(score.path), timed.get("p50_ms"),
                     timed.get("fps"), timed.get("speedup")])
    return Table(["model", "size MB", "p50 ms", "FPS", "speed-up x"], rows)


def _models(run: PipelineRun, predictions: Path | None = None) -> Section:
    """Two narrow tables, accuracy then speed and size, so each fits a page (and the Prefect UI) whole."""
    blocks: list[Any] = [
        Paragraph(f"accuracy on the test split ({run.scores[0].num_images} images); latency at batch 1 on "
                  f"this machine; speed-up against the first timed model; the teachers' size is their LoRA "
                  f"adapters' (the base models come separately)"),
        accuracy_table(run), speed_table(run)]
    plot = run.benchmark_files.get("plot")
    if plot is not None and Path(plot).is_file():
        blocks.append(Image(_relative(plot, run.run_dir), "latency and accuracy per model"))
    if predictions is not None:
        blocks.append(Image(_relative(predictions, run.run_dir), "test images: ground truth, then each model's "
                                                                 "predictions scoring 0.3 or more"))
    return Section("Teacher vs student vs exports", blocks)


def _settings(settings: Mapping[str, Any]) -> Section:
    """The run's parameters: a two-column table, and the paths in a list below it (a long path would widen the
    table past the page)."""
    rows = [[key, _setting(value)] for key, value in settings.items() if key not in PATH_SETTINGS]
    paths = [f"{key}: `{value}`" if value else f"{key}: -" for key, value in settings.items() if key in PATH_SETTINGS]
    return Section("Settings", [Table(["setting", "value"], rows)] + ([Bullets(paths)] if paths else []))


def _relative(path: str | os.PathLike[str], root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _size_mb(path: str) -> float | None:
    from mlcore.evaluation.report import size_mb

    return size_mb(path)


def _setting(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


__all__ = ["HTML_NAME", "MARKDOWN_NAME", "STORE_SECTION", "ModelScores", "PipelineRun", "StageRecord", "StoreStatus",
           "accuracy_table", "document_from_json", "document_to_json", "gate_summary", "pipeline_document",
           "pipeline_markdown", "speed_table", "store_section", "with_store_status", "write_pipeline_report",
           "write_report_document"]
