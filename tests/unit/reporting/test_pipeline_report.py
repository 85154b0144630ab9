"""The run report: what a person reads after a pipeline run, in markdown (artifact, report.md) and HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.data.prepare import DatasetReport
from mlcore.distill.records import DistillationResult
from mlcore.finetune.records import TeacherRun, TeacherTrainingResult
from mlcore.optimization.gate import GateDecision
from mlcore.optimization.onnx_export import OnnxExport
from mlcore.optimization.optimize import OptimizationResult
from mlcore.optimization.quantize import QuantizedModel
from mlcore.reporting import (ModelScores, PipelineRun, StageRecord, StoreStatus, document_from_json, document_to_json,
                              pipeline_document, pipeline_markdown, to_html, to_markdown, with_store_status,
                              write_pipeline_report)


def export_result(run_dir: Path, *, passed: bool = True) -> OptimizationResult:
    folder = run_dir / "export"
    folder.mkdir(parents=True, exist_ok=True)
    onnx, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    onnx.write_bytes(b"0" * 4_000_000)
    int8.write_bytes(b"0" * 1_000_000)
    kept = int8 if passed else onnx
    reason = ("passed: map50_95 39.50 quantized vs 40.00 float: a drop of 0.50 points (allowed 1); keeping "
              "model.int8.onnx" if passed else
              "failed: map50_95 35.00 quantized vs 40.00 float: a drop of 5.00 points (allowed 1); keeping the "
              "higher-precision model.onnx instead")
    gate = GateDecision(metric="map50_95", float_value=40.0, quantized_value=39.5 if passed else 35.0,
                        drop=0.5 if passed else 5.0, threshold=1.0, passed=passed, kept_path=kept, reason=reason,
                        on_fail="keep_higher_precision", float_path=onnx, quantized_path=int8)
    return OptimizationResult(
        output_dir=folder,
        onnx=OnnxExport(path=onnx, opset=18, imgsz=192, task="segment", class_names=["square", "circle"], stride=32,
                        input_name="images", input_shape=[1, 3, 192, 192], output_names=["output0"],
                        dynamic_batch=False, size_bytes=4_000_000, parity=None),
        quantized=QuantizedModel(path=int8, method="int8_static", size_bytes=1_000_000, source=onnx,
                                 source_size_bytes=4_000_000),
        gate=gate, engine=None, recommended=kept, recommended_reason=reason, report_path=folder / "export.json",
        files=[{"name": "model.onnx", "format": "onnx", "precision": "fp32", "size_bytes": 4_000_000,
                "size_mb": 3.815},
               {"name": "model.int8.onnx", "format": "int8_static", "precision": "int8", "size_bytes": 1_000_000,
                "size_mb": 0.954}])


def pipeline_run(run_dir: Path, *, passed: bool = True) -> PipelineRun:
    dataset = DatasetReport(dataset=str(run_dir / "shapes <v2>.json"), dataset_sha256="ab" * 32,
                            images_root=str(run_dir / "images"), output_dir=str(run_dir / "prepared"), usable=True,
                            annotation_mode="detection_and_segmentation", num_classes=2,
                            counts={"error": 0, "warning": 1, "info": 0}, splits={"train": 17, "val": 4, "test": 3},
                            findings=[])
    teacher = TeacherRun(family="grounding_dino", preset="tiny", adapter_dir=run_dir / "teachers" / "gd_lora",
                         best_metric="map50_95", best=0.4321, best_epoch=1, epochs=[], lora={"ratio": 0.01},
                         timings={}, resumed_from=None, train_images=17, val_images=4,
                         baseline={"map50_95": 0.1})
    teachers = TeacherTrainingResult(output_dir=run_dir / "teachers", mode="detection_and_segmentation",
                                     device="cpu", runs={"grounding_dino": teacher})
    student = DistillationResult(output_dir=run_dir / "student", mode="detection_and_segmentation",
                                 student="yolov8n-seg", best_metric="map50_95", best=0.2468, best_epoch=5,
                                 epochs=[{}] * 6, teacher_calls=17, pseudo_labelled_images=0)
    scores = [ModelScores("teachers", "teachers", str(run_dir / "teachers"), {"map50_95": 0.41, "map50": 0.6}, 3),
              ModelScores("best.pt", "pytorch", str(run_dir / "student" / "best.pt"),
                          {"map50_95": 0.25, "map50": 0.5, "mask_map50_95": 0.2, "mask_map50": 0.45}, 3),
              ModelScores("model.int8.onnx", "onnx-int8", str(run_dir / "export" / "model.int8.onnx"),
                          {"map50_95": 0.24, "map50": 0.49}, 3)]
    rows = [{"name": "teachers", "size_mb": None, "p50_ms": 812.5, "fps": 1.2, "speedup": 1.0},
            {"name": "best.pt", "size_mb": 6.8, "p50_ms": 31.25, "fps": 32.0, "speedup": 26.0},
            {"name": "model.int8.onnx", "size_mb": 0.954, "p50_ms": 7.5, "fps": 133.3, "speedup": 108.3}]
    plot = run_dir / "benchmark" / "report.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"png")
    return PipelineRun(run_dir=run_dir, dataset=dataset, settings={"quantize": "int8", "export_formats": ["onnx"],
                                                                   "teacher_preset": "tiny"},
                       splits={"train": str(run_dir / "prepared" / "train.json"),
                               "test": str(run_dir / "prepared" / "test.json")},
                       code_version="0.1.0+abcdef123456", teachers=teachers, student=student,
                       export=export_result(run_dir, passed=passed), scores=scores, benchmark_rows=rows,
                       benchmark_files={"plot": plot},
                       stages=[StageRecord("train-teachers", "cached", 0.4), StageRecord("distill", "ran", 61.2)])


def test_the_report_names_dataset_mode_metrics_latency_sizes_gate_and_paths(tmp_path: Path) -> None:
    text = pipeline_markdown(pipeline_run(tmp_path))
    assert f"run folder: `{tmp_path}`" in text
    assert "mode: **detection_and_segmentation**" in text and "sha256 `abababab" in text
    assert "| grounding_dino | tiny | map50_95 | 0.4321 | 0.1 | 0.3321 |" in text  # best, before, gain
    assert "| yolov8n-seg | map50_95 | 0.2468 | 5 | 6 | 17 |" in text
    assert "| model.int8.onnx | int8_static | int8 | 0.954 |" in text  # model sizes
    assert "accuracy gate: passed:" in text and "a drop of 0.50 points (allowed 1)" in text
    assert "recommended model: `export/model.int8.onnx`" in text
    assert "| best.pt | pytorch | 0.25 | 0.5 | 0.2 | 0.45 |" in text  # accuracy
    assert "| best.pt | 6.8 | 31.25 | 32 | 26 |" in text  # size and latency
    assert "| teachers | teachers | 0.41 | 0.6 | - | - |" in text and "| teachers | - | 812.5 | 1.2 | 1 |" in text
    assert "| train-teachers | cached | 0.4 |" in text and "| distill | ran | 61.2 |" in text
    assert "![latency and accuracy per model](benchmark/report.png)" in text
    assert "| export_formats | onnx |" in text
    assert "tiny presets" in text  # says the demo's numbers are not model quality


def test_a_failed_gate_says_so_and_ships_the_float_model(tmp_path: Path) -> None:
    text = pipeline_markdown(pipeline_run(tmp_path, passed=False))
    assert "accuracy gate: failed:" in text and "recommended model: `export/model.onnx`" in text


def test_report_md_and_report_html_are_written_beside_the_outputs(tmp_path: Path) -> None:
    run = pipeline_run(tmp_path)
    files = write_pipeline_report(run)
    assert files == {"markdown": tmp_path / "report.md", "html": tmp_path / "report.html"}
    assert files["markdown"].read_text() == pipeline_markdown(run)
    html = files["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    assert "shapes &lt;v2&gt;.json" in html and "<v2>" not in html  # escaped
    assert '<img src="benchmark/report.png"' in html
    assert "<strong>detection_and_segmentation</strong>" in html


@pytest.mark.parametrize("missing", ["teachers", "student", "export"])
def test_a_run_that_stopped_early_still_reports_what_it_has(tmp_path: Path, missing: str) -> None:
    run = pipeline_run(tmp_path)
    setattr(run, missing, None)
    if missing == "export":
        run.scores, run.benchmark_rows = [], []
    text = pipeline_markdown(run)
    assert "## Dataset" in text and "## Settings" in text


def test_a_dataset_fetched_from_s3_names_its_source(tmp_path: Path) -> None:
    run = pipeline_run(tmp_path)
    assert "dataset source:" not in pipeline_markdown(run)
    run.settings["data"] = "s3://team/coco/annotations.json"
    assert (f"dataset source: `s3://team/coco/annotations.json` (fetched into `{tmp_path / 'source'}`)"
            in pipeline_markdown(run))


def test_the_stored_copy_section_says_what_happened(tmp_path: Path) -> None:
    url, command = "s3://team/runs/20260101-000000-abcdef", f"mlcore store {tmp_path} --store s3://team/runs"
    run = pipeline_run(tmp_path)
    assert "Stored copy" not in pipeline_markdown(run)  # a run kept only in its folder says nothing about a store

    run.store = StoreStatus("pending", url, command=command)
    pending = pipeline_markdown(run)
    assert f"being stored at `{url}` when this report was written" in pending and f"`{command}`" in pending
    assert pending.index("## Stored copy") < pending.index("## Dataset")  # right after the summary

    document = pipeline_document(run)
    stored = to_markdown(with_store_status(document, StoreStatus("stored", url, detail="26 files, each checked")))
    assert f"**stored and verified** at `{url}`" in stored and "26 files, each checked" in stored
    assert "being stored" not in stored and stored.count("## Stored copy") == 1

    failed = with_store_status(document, StoreStatus("not stored", url, detail=f"{url}/x: upload failed 9 times",
                                                     fix="check the network", command=command))
    text, html = to_markdown(failed), to_html(failed)
    assert f"**not stored** at `{url}`" in text and f"why: {url}/x: upload failed 9 times" in text
    assert "fix: check the network" in text
    assert f"to store them later (files already there are not sent again): `{command}`" in text
    assert "stored and verified" not in text and "<strong>not stored</strong>" in html


def test_the_report_document_survives_json(tmp_path: Path) -> None:
    import json

    document = pipeline_document(pipeline_run(tmp_path))
    again = document_from_json(json.loads(json.dumps(document_to_json(document))))
    assert to_markdown(again) == to_markdown(document) and to_html(again) == to_html(document)


def test_tables_keep_paths_out_so_they_fit_a_page(tmp_path: Path) -> None:
    run = pipeline_run(tmp_path)
    run.settings.update({"data": str(tmp_path / "coco" / "annotations.json"), "val": None})
    text = pipeline_markdown(run)
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert not any(str(tmp_path) in line for line in table_lines)  # paths are listed below the tables
    assert f"- grounding_dino adapter: `{tmp_path / 'teachers' / 'gd_lora'}`" in text
    assert f"- data: `{tmp_path / 'coco' / 'annotations.json'}`" in text and "- val: -" in text
    assert max(line.count("|") - 1 for line in table_lines) <= 7  # the widest table has 7 columns


def test_the_report_shows_training_curves_and_test_predictions_side_by_side(tmp_path: Path) -> None:
    import json

    from mlcore.data.demo import make_field_dataset

    run = pipeline_run(tmp_path)
    run.teachers.runs["grounding_dino"].epochs = [{"epoch": i, "train_loss": 5.0 - i, "map50_95": 0.2 + 0.05 * i}
                                                  for i in range(3)]
    test = make_field_dataset(tmp_path / "field", num_images=3, negatives=0)
    run.splits["test"] = str(test)
    truth = json.loads(test.read_text())["annotations"]
    for score in run.scores:
        score.output_dir = str(tmp_path / "evaluation" / score.name)
        Path(score.output_dir).mkdir(parents=True)
        Path(score.output_dir, "predictions.json").write_text(json.dumps(
            [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.8}
             for a in truth]))

    files = write_pipeline_report(run)

    markdown = files["markdown"].read_text()
    for picture in ("pictures/training_curves.png", "pictures/predictions.png"):
        assert f"]({picture})" in markdown
        assert (tmp_path / picture).stat().st_size > 1000
    # ground truth, teachers, the student and the export the gate kept: four columns of 256 px
    from PIL import Image

    assert Image.open(tmp_path / "pictures" / "predictions.png").width == 4 * 256
