"""Run reports as markdown and standalone HTML, built from the stages' own records (no orchestrator needed).

- `PipelineRun` (+ `ModelScores`, `StageRecord`): what a training-pipeline run produced.
- `write_pipeline_report(run, dir)` -> report.md and report.html; `pipeline_markdown(run)`, the same markdown.
- `inline_pictures(markdown, root)`: the markdown with its pictures embedded, for viewers without the run folder
  (the Prefect UI); `table_records(table)`: a table's rows with rounded numbers, for table artifacts.
- `StoreStatus` / `with_store_status(document, status)`: the "Stored copy" section, rewritten once the store is done.
- `Document` / `to_markdown` / `to_html`: the small document model both are rendered from.
"""

from mlcore.reporting.document import (Bullets, Document, Image, Paragraph, Section, Table, rounded, table_records,
                                      to_html, to_markdown)
from mlcore.reporting.pictures import inline_pictures, png_data_uri
from mlcore.reporting.pipeline_report import (HTML_NAME, MARKDOWN_NAME, ModelScores, PipelineRun, StageRecord,
                                              StoreStatus, accuracy_table, document_from_json, document_to_json,
                                              gate_summary, pipeline_document, pipeline_markdown, speed_table,
                                              with_store_status, write_pipeline_report, write_report_document)

__all__ = ["HTML_NAME", "MARKDOWN_NAME", "Bullets", "Document", "Image", "ModelScores", "Paragraph", "PipelineRun",
           "Section", "StageRecord", "StoreStatus", "Table", "accuracy_table", "document_from_json", "document_to_json",
           "gate_summary", "inline_pictures", "pipeline_document", "pipeline_markdown", "png_data_uri", "rounded",
           "speed_table", "table_records", "to_html", "to_markdown", "with_store_status", "write_pipeline_report",
           "write_report_document"]
