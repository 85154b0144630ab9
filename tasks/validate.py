"""The validation step as a Prefect task."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from mlcore.data.findings import Severity
from mlcore.data.prepare import DatasetReport, prepare_dataset
from mlcore.errors import MlcoreError

MAX_ERRORS_SHOWN = 20


def _markdown(report: DatasetReport) -> str:
    stats = report.statistics
    lines = [
        f"## Dataset validation: {'usable' if report.usable else 'NOT usable'}",
        "",
        f"- file: `{report.dataset}` (sha256 `{report.dataset_sha256[:12]}`)",
        f"- mode: **{report.annotation_mode or '-'}**, classes: {report.num_classes}",
        f"- images: {stats.images if stats else 0}, annotations: {stats.annotations if stats else 0}",
        f"- findings: {report.counts.get('error', 0)} errors, {report.counts.get('warning', 0)} warnings",
    ]
    if report.splits:
        lines.append("- splits: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()))
    errors = [f for f in report.findings if f.severity == Severity.ERROR][:MAX_ERRORS_SHOWN]
    if errors:
        lines += ["", "| rule | where | message | fix |", "|---|---|---|---|"]
        lines += [f"| {f.code} | `{f.path}` | {f.message} | {f.fix} |" for f in errors]
    return "\n".join(lines)


def unusable_dataset_state(report: DatasetReport) -> State:
    """A failed final state that says why, without a traceback: bad data is the user's to fix, not a crash."""
    errors = [f"{f.path}: {f.message}" for f in report.findings if f.severity == Severity.ERROR]
    shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
    return Failed(message=f"{report.dataset} is not usable ({len(errors)} error(s)): {shown}. "
                          f"Full report: {report.outputs.get('report')}")


# Validation is fast and deterministic, and a bad dataset does not get better by retrying: no retries, no cache.
@task(name="validate-dataset", retries=0, cache_policy=NONE, timeout_seconds=3600)
def validate_dataset_task(
    data: str,
    images: str | None = None,
    output: str | None = None,
    split: str | None = None,
    seed: int = 42,
    image_check: str = "header",
    mode: str | None = None,
    keep_empty_classes: bool = False,
    configs_dir: str | None = None,
    crowd_as_instances: str = "auto",
    group_by: str | None = None,
) -> DatasetReport | State:
    """The report; a Failed state, not an exception, when the input cannot even be read (the user's to fix)."""
    try:
        report = prepare_dataset(data, images_dir=images, output_dir=output, split=split, seed=seed,
                                 image_check=image_check, mode=mode, keep_empty_classes=keep_empty_classes,
                                 configs_dir=configs_dir, progress=False, crowd_as_instances=crowd_as_instances,
                                 group_by=group_by)
    except MlcoreError as error:
        return Failed(message=str(error))
    create_markdown_artifact(_markdown(report), key="dataset-validation", description=f"Validation of {data}")
    return report
