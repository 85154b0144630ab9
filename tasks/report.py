"""The run report as a Prefect task: report.md / report.html beside the outputs, and the run's artifacts.

The report artifact is report.md with its pictures embedded (mlcore.reporting.pictures): the Prefect UI has only the
markdown, and would resolve `benchmark/report.png` against its own address. Table artifacts keep to the columns a
person reads on the run's page, with rounded numbers; paths are in the report.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from mlcore.reporting import (PipelineRun, accuracy_table, inline_pictures, pipeline_markdown, table_records,
                              write_pipeline_report)
from tasks.policy import retry_transient

TIMEOUT_SECONDS = 600
REPORT_KEY = "training-pipeline-report"


def publish_report(markdown: str, run_dir: str | Path, description: str) -> None:
    """A new version of the run's report artifact: MARKDOWN (report.md's text) with its pictures embedded."""
    create_markdown_artifact(inline_pictures(markdown, run_dir), key=REPORT_KEY, description=description)


# Never cached: it is cheap, and each run's report says which stages ran and which were reused.
@task(name="write-report", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NONE,
      timeout_seconds=TIMEOUT_SECONDS)
def report_task(run: PipelineRun) -> dict[str, Path]:
    files = write_pipeline_report(run)
    publish_report(pipeline_markdown(run), run.run_dir,
                   f"Training pipeline report; also {files['markdown']} and {files['html']}")
    create_table_artifact([{"stage": s.name, "status": s.status, "seconds": round(s.seconds, 1)} for s in run.stages],
                          key="pipeline-stages", description="How each stage went in this run")
    create_table_artifact(table_records(accuracy_table(run)), key="model-scores",
                          description="Accuracy of each model on the test split")
    return files
