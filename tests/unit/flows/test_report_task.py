"""The report task's artifacts, as the run's page in the Prefect UI shows them: pictures inside the markdown, narrow
tables with rounded numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image as PILImage

from tasks.report import report_task
from tests.unit.reporting.test_pipeline_report import pipeline_run


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The artifacts by key (`.fn` runs outside a flow run, with no API to send them to)."""
    found: dict[str, object] = {}
    monkeypatch.setattr("tasks.report.create_markdown_artifact",
                        lambda markdown, key, **options: found.__setitem__(key, markdown))
    monkeypatch.setattr("tasks.report.create_table_artifact", lambda rows, key, **options: found.__setitem__(key, rows))
    return found


def test_the_report_artifact_carries_its_chart_and_report_md_links_it(tmp_path: Path, published) -> None:
    run = pipeline_run(tmp_path)
    PILImage.new("RGB", (1210, 500), "white").save(run.benchmark_files["plot"])  # the benchmark's chart
    report_task.fn(run)

    artifact = published["training-pipeline-report"]
    assert "![latency and accuracy per model](data:image/png;base64," in artifact
    assert "benchmark/report.png)" not in artifact  # a relative link, resolved by the UI against itself: 404
    assert "![latency and accuracy per model](benchmark/report.png)" in (tmp_path / "report.md").read_text()


def test_the_score_table_has_readable_columns_and_rounded_numbers(tmp_path: Path, published) -> None:
    run = pipeline_run(tmp_path)
    run.scores[1].metrics["map50_95"] = 0.2512345678
    report_task.fn(run)

    best = published["model-scores"][1]
    assert best == {"model": "best.pt", "kind": "pytorch", "mAP50-95": 0.2512, "mAP50": 0.5, "mask mAP50-95": 0.2,
                    "mask mAP50": 0.45}
