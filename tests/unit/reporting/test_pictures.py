"""The report's pictures embedded in its markdown, and table artifacts' rounded numbers: what the Prefect UI shows."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image as PILImage

from mlcore.reporting import Document, Image, Section, Table, inline_pictures, rounded, table_records, to_markdown


def _chart(path: Path, width: int = 1210, height: int = 600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = PILImage.new("RGB", (width, height), "white")
    picture.paste((31, 119, 180), (100, 100, width // 2, height - 100))  # a bar
    picture.save(path)
    return path


def _decoded(uri: str) -> PILImage.Image:
    assert uri.startswith("data:image/png;base64,")
    return PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_report_picture_is_embedded_downscaled_so_the_markdown_stands_alone(tmp_path: Path) -> None:
    _chart(tmp_path / "benchmark" / "report.png")
    document = Document("Report", [Section("Speed", [Image("benchmark/report.png", "latency per model")])])
    markdown = to_markdown(document)
    assert "![latency per model](benchmark/report.png)" in markdown  # report.md links the file beside it

    inlined = inline_pictures(markdown, tmp_path)
    line = next(line for line in inlined.splitlines() if line.startswith("!["))
    uri = line.removeprefix("![latency per model](").removesuffix(")")
    picture = _decoded(uri)
    assert picture.size == (900, 446)  # downscaled to the page, proportions kept
    assert len(uri) < 40_000  # a flat chart costs tens of kilobytes, not the original's size


def test_a_missing_picture_keeps_its_link_and_other_lines_are_untouched(tmp_path: Path) -> None:
    markdown = "# R\n\n![gone](benchmark/missing.png)\n\ntext with ![inline](x.png) stays\n"
    assert inline_pictures(markdown, tmp_path) == markdown


def test_table_records_round_to_four_significant_digits() -> None:
    table = Table(["model", "FPS", "mAP50-95", "size MB"], [["best.pt", 1056.0479089999717, 0.000123456, None]])
    assert table_records(table) == [{"model": "best.pt", "FPS": 1056.0, "mAP50-95": 0.0001235, "size MB": None}]
    assert rounded(31.25) == 31.25 and rounded(7) == 7 and rounded("text") == "text"
