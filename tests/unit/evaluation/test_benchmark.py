"""Benchmarks return their structure (no timing is asserted), memory peaks see an allocation, reports are written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.evaluation import (
    MemoryResult,
    ReportEntry,
    SpeedResult,
    benchmark_accuracy,
    benchmark_memory,
    benchmark_speed,
    comparison_report,
)
from mlcore.evaluation.report import COLUMNS
from mlcore.students import Student, get_student_model
from tests.unit.evaluation.conftest import CATEGORY_IDS, NAMES, read_json
from tests.unit.evaluation.memory_work import fail, hold_memory
from tests.unit.evaluation.test_curves import PNG_MAGIC
from tests.unit.evaluation.test_evaluate import StudentStandIn

ALLOCATION_MB = 64


class PredictingStandIn(StudentStandIn):
    """The engine protocol's predict(images) too, through the Student."""

    device = "cpu"

    def predict(self, images, *, conf: float = 0.25, iou: float = 0.7, max_det: int = 300):
        return self.student.predict(images, imgsz=self.imgsz, conf=conf, iou=iou, max_det=max_det)


@pytest.fixture(scope="module")
def engine() -> PredictingStandIn:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student: Student = get_student_model("detection_only", class_names=NAMES)
    return PredictingStandIn(student)


def test_speed_of_an_engine_per_batch_size(demo_split: tuple[Path, CocoDataset], engine: PredictingStandIn) -> None:
    _, dataset = demo_split
    images = [dataset[index].image_path for index in range(3)]
    speed = benchmark_speed(engine, images, warmup=1, runs=3, batch_sizes=(1, 4))
    assert isinstance(speed, SpeedResult) and speed.name == "stand-in" and speed.device == "cpu"
    assert [batch.batch_size for batch in speed.batches] == [1, 4]
    for batch in speed.batches:
        assert batch.runs == 3 and 0 < batch.min_ms <= batch.p50_ms <= batch.p95_ms and batch.fps > 0
    assert speed.at(4) is speed.batches[1] and speed.at(2) is None
    assert set(speed.to_dict()["batches"][0]) >= {"p50_ms", "p95_ms", "fps", "per_image_ms"}


def test_speed_of_a_plain_function_sees_every_call() -> None:
    batches: list[int] = []
    speed = benchmark_speed(lambda batch: batches.append(len(batch)), ["x"], warmup=2, runs=5, batch_sizes=(1, 3),
                            name="noop")
    assert batches == [1] * 7 + [3] * 7 and speed.name == "noop"
    with pytest.raises(ValueError):
        benchmark_speed(len, [], runs=1)


def test_memory_peak_in_a_child_process() -> None:
    memory = benchmark_memory(hold_memory, ALLOCATION_MB)
    assert isinstance(memory, MemoryResult) and "child process" in memory.method
    assert memory.increase_rss_mb >= ALLOCATION_MB * 0.75
    assert memory.peak_gpu_mb is None  # hold_memory never starts CUDA
    with pytest.raises(ValueError, match="must pickle"):
        benchmark_memory(lambda: None)
    with pytest.raises(RuntimeError, match="ZeroDivisionError: on purpose"):
        benchmark_memory(fail)


def test_memory_peak_in_process() -> None:
    memory = benchmark_memory(hold_memory, ALLOCATION_MB, isolate=False)
    assert "in-process" in memory.method and memory.increase_rss_mb >= ALLOCATION_MB * 0.5


def test_comparison_report_has_every_column_and_ratios(demo_split: tuple[Path, CocoDataset],
                                                       engine: PredictingStandIn, tmp_path: Path) -> None:
    annotation_file, dataset = demo_split
    accuracy = benchmark_accuracy(engine, dataset, annotation_file, CATEGORY_IDS)
    speed = benchmark_speed(engine, [dataset[0].image_path], warmup=1, runs=2, batch_sizes=(1, 2))
    model = tmp_path / "model.bin"
    model.write_bytes(b"\0" * 2_000_000)
    entries = [
        ReportEntry("teacher", "teacher", size_mb=700.0, accuracy={"map50_95": 0.5, "map50": 0.7,
                                                                    "mask_map50_95": 0.4, "mask_map50": 0.6},
                    speed=speed, memory=MemoryResult(2000.0, 300.0, None, "test")),
        ReportEntry("student", "pytorch", path=model, accuracy=accuracy, speed=speed,
                    memory=MemoryResult(500.0, 300.0, None, "test"), notes="random weights"),
        ReportEntry("int8", "onnx-int8", size_mb=0.5),
    ]
    report = comparison_report(entries, tmp_path / "report", baseline="teacher")
    assert {path.name for path in report.files.values()} == {"report.md", "report.json", "report.png"}
    data = read_json(report.files["json"])
    assert data["baseline"] == "teacher" and data["columns"] == list(COLUMNS)
    assert [row["name"] for row in data["rows"]] == ["teacher", "student", "int8"]
    teacher, student, int8 = data["rows"]
    assert set(teacher) == set(COLUMNS)
    assert student["size_mb"] == pytest.approx(2.0) and student["size_ratio"] == pytest.approx(2.0 / 700.0)
    assert teacher["latency_ratio"] == pytest.approx(1.0) and teacher["map_delta"] == pytest.approx(0.0)
    assert student["map_delta"] == pytest.approx((accuracy.map50_95 - 0.5) * 100)
    assert int8["p50_ms"] is None and int8["speedup"] is None and int8["map50_95"] is None
    assert "processor" in data["environment"] and data["entries"][1]["notes"] == "random weights"
    markdown = report.files["markdown"].read_text()
    for header in ("model", "size MB", "mAP50-95", "mask mAP50-95", "p50 ms", "p95 ms", "FPS", "peak RSS MB",
                   "speed-up x", "ΔmAP pts", "batch 2"):
        assert header in markdown
    assert report.files["plot"].read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="baseline"):
        comparison_report(entries, tmp_path / "other", baseline="missing")
