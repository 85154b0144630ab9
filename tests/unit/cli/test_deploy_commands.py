"""`mlcore optimize`, `infer`, `evaluate`, `benchmark` as a user runs them, on a small student and demo data."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mlcore.cli.app import app
from mlcore.data.demo import make_demo_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.prepare import prepare_dataset
from mlcore.errors import DatasetError
from mlcore.students import get_student_model
from tests.unit.relocated import Relocated, relocate

IMGSZ = 96
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy")
    source = make_demo_dataset(root / "shapes", mode="both", num_images=8, negatives=0, image_size=(128, 96), seed=4)
    prepare_dataset(source, output_dir=root / "prepared", split="train:0.5,val:0.25,test:0.25", progress=False)
    mode = ModeConfig.read(root / "prepared")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = get_student_model(mode, "n", class_names=mode.class_names)
    student.save(root / "best.pt", imgsz=IMGSZ)
    return {"root": root, "model": root / "best.pt", "images": source.parent / "images",
            "train": root / "prepared" / "train.json", "val": root / "prepared" / "val.json",
            "test": root / "prepared" / "test.json"}


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_optimize_writes_onnx_int8_and_the_gate_decision(setup) -> None:
    out = setup["root"] / "export"
    result = invoke("optimize", "--model", str(setup["model"]), "--output", str(out), "--quantize", "int8",
                    "--calib-data", str(setup["train"]), "--val-data", str(setup["val"]))
    report = json.loads((out / "export.json").read_text())
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    assert report["accuracy_gate"]["evaluated"] is True
    assert "accuracy gate:" in result.output and "recommended:" in result.output


def test_infer_writes_overlays_and_a_results_file(setup) -> None:
    out = setup["root"] / "infer"
    invoke("infer", "--model", str(setup["model"]), "--source", str(setup["images"]), "--output", str(out),
           "--conf", "0.001")
    images = sorted(path.name for path in setup["images"].iterdir())
    assert sorted(path.name for path in (out / "overlays").iterdir()) == images and len(images) == 8
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and {record["file_name"] for record in predictions} <= set(images)
    assert all(len(record["bbox"]) == 4 and record["score"] >= 0.001 for record in predictions)


def test_infer_threads_and_workers_change_the_speed_not_the_results(setup, tmp_path: Path) -> None:
    from mlcore.optimization import export_to_onnx

    onnx_path = export_to_onnx(setup["model"], tmp_path / "model.onnx", imgsz=IMGSZ).path
    runs = {}
    for label, extra in (("default", []), ("pinned", ["--threads", "1", "--workers", "1"])):
        invoke("infer", "--model", str(onnx_path), "--source", str(setup["images"]), "--output",
               str(tmp_path / label), "--conf", "0.001", *extra)
        runs[label] = json.loads((tmp_path / label / "predictions.json").read_text())
    assert runs["pinned"] and runs["pinned"] == runs["default"]
    refused = runner.invoke(app, ["infer", "--model", str(onnx_path), "--source", str(setup["images"]), "--output",
                                  str(tmp_path / "bad"), "--workers", "0"])
    assert refused.exit_code == 2 and "--workers" in refused.output and not (tmp_path / "bad").exists()


def test_evaluate_predictions_equals_pycocotools_on_the_same_files(setup) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = json.loads(setup["test"].read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9 - i / 100}
               for i, a in enumerate(truth["annotations"][::2])]  # half the objects found: mAP strictly inside (0, 1)
    path = setup["root"] / "results.json"
    path.write_text(json.dumps(results))
    output = invoke("evaluate", "--data", str(setup["test"]), "--predictions", str(path)).output
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(setup["test"]))
        evaluation = COCOeval(coco, coco.loadRes(str(path)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    printed = dict(line.split() for line in output.splitlines() if line.startswith("map"))
    assert float(printed["map50_95"]) == pytest.approx(evaluation.stats[0], abs=1e-4)
    assert 0 < evaluation.stats[0] < 1


def test_benchmark_writes_the_comparison_report(setup) -> None:
    out = setup["root"] / "bench"
    second = setup["root"] / "second.pt"
    shutil.copyfile(setup["model"], second)
    invoke("benchmark", "--models", str(setup["model"]), str(second), "--data", str(setup["test"]), "--output",
           str(out), "--runs", "2", "--batch-size", "1")  # the form: --models M1 M2 ...
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").is_file() and (out / "report.png").is_file()
    assert [row["name"] for row in report["rows"]] == ["best.pt", "second.pt"]


def test_evaluate_without_a_target_is_one_clear_error(setup) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    completed = subprocess.run([sys.executable, "-m", "mlcore.cli.app", "evaluate", "--data", str(setup["test"])],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 2
    assert "exactly one of --model, --teachers, --predictions" in completed.stderr
    assert "Traceback" not in completed.stderr


# --- split files moved away from their images: --images --------------------------------------------------------

@pytest.fixture(scope="module")
def moved(setup) -> dict[str, Relocated]:
    """train / val / test copied to ROOT/moved/split (no .mode_config.json, no recorded root), images to moved/pics."""
    return {name: relocate(setup[name], setup["images"], setup["root"] / "moved") for name in ("train", "val", "test")}


def fails_naming_the_search(*args: str, moved: Relocated) -> None:
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, DatasetError), (result.output, result.exception)
    message = str(result.exception)
    assert all(str(folder) in message for folder in moved.tried_folders()) and "--images" in message


def test_evaluate_a_moved_split_needs_images(setup, moved) -> None:
    test = moved["test"]
    fails_naming_the_search("evaluate", "--data", str(test.annotations), "--model", str(setup["model"]), moved=test)
    output = invoke("evaluate", "--data", str(test.annotations), "--model", str(setup["model"]), "--images",
                    str(test.images)).output
    assert "map50_95" in output


def test_benchmark_a_moved_split_needs_images(setup, moved) -> None:
    test, out = moved["test"], setup["root"] / "bench_moved"
    options = ["--output", str(out), "--runs", "1", "--batch-size", "1"]
    fails_naming_the_search("benchmark", "--models", str(setup["model"]), "--data", str(test.annotations), *options,
                            moved=test)
    invoke("benchmark", "--models", str(setup["model"]), "--data", str(test.annotations), "--images",
           str(test.images), *options)
    assert [row["name"] for row in json.loads((out / "report.json").read_text())["rows"]] == ["best.pt"]


def test_optimize_calibrates_and_gates_on_moved_splits_with_images(setup, moved) -> None:
    train, val, out = moved["train"], moved["val"], setup["root"] / "export_moved"
    files = ["--calib-data", str(train.annotations), "--val-data", str(val.annotations)]
    fails_naming_the_search("optimize", "--model", str(setup["model"]), "--output", str(out), "--quantize", "int8",
                            *files, moved=train)
    invoke("optimize", "--model", str(setup["model"]), "--output", str(out), "--quantize", "int8", *files,
           "--images", str(train.images))  # one folder for both files
    report = json.loads((out / "export.json").read_text())
    assert (out / "model.int8.onnx").is_file() and report["accuracy_gate"]["evaluated"] is True


def test_infer_on_a_coco_file_uses_its_images_and_ids(setup, moved) -> None:
    test, out = moved["test"], setup["root"] / "infer_coco"
    fails_naming_the_search("infer", "--model", str(setup["model"]), "--source", str(test.annotations), "--output",
                            str(out), moved=test)
    invoke("infer", "--model", str(setup["model"]), "--source", str(test.annotations), "--images", str(test.images),
           "--output", str(out), "--conf", "0.001")
    listed = json.loads(test.annotations.read_text())
    summary = json.loads((out / "inference.json").read_text())
    assert [(image["id"], image["file_name"]) for image in summary["images"]] == [
        (image["id"], image["file_name"]) for image in listed["images"]]
    by_name = {category["name"]: category["id"] for category in listed["categories"]}
    assert all(category["id"] == by_name[category["name"]] for category in summary["categories"])
