"""The run report as a Prefect task: report.md / report.html beside the outputs, and the run's artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from mlcore.reporting import PipelineRun, pipeline_markdown, write_pipeline_report
from tasks.policy import retry_transient

TIMEOUT_SECONDS = 600


# Never cached: it is cheap, and each run's report says which stages ran and which were reused.
@task(name="write-report", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NONE,
      timeout_seconds=TIMEOUT_SECONDS)
def report_task(run: PipelineRun) -> dict[str, Path]:
    files = write_pipeline_report(run)
    create_markdown_artifact(pipeline_markdown(run), key="training-pipeline-report",
                             description=f"Training pipeline report; also {files['markdown']} and {files['html']}")
    create_table_artifact([{"stage": s.name, "status": s.status, "seconds": round(s.seconds, 1)} for s in run.stages],
                          key="pipeline-stages", description="How each stage went in this run")
    create_table_artifact([{"model": s.name, "kind": s.kind, **s.metrics} for s in run.scores],
                          key="model-scores", description="Accuracy of each model on the test split")
    return files
