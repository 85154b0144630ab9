"""`validate-dataset`: check a COCO dataset and fail the run, with the reasons, when it is not usable."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from mlcore.data.prepare import DatasetReport
from mlcore.errors import DatasetError
from tasks.validate import validate_dataset_task


@flow(name="validate-dataset", log_prints=True)
def validate_dataset(
    data: str,
    images: str | None = None,
    output: str | None = None,
    split: str | None = "train:0.7,val:0.15,test:0.15",
    seed: int = 42,
    image_check: Literal["full", "header", "none"] = "header",
) -> DatasetReport:
    """Validate DATA (a COCO JSON), write the cleaned copy, mode config and splits beside it or into OUTPUT."""
    report = validate_dataset_task(data, images=images, output=output, split=split, seed=seed,
                                   image_check=image_check)
    if not report.usable:
        errors = [f"{f.path}: {f.message}" for f in report.findings if f.severity.value == "error"]
        raise DatasetError(f"{len(errors)} error(s): " + "; ".join(errors[:5]), where=data,
                           fix=f"see {report.outputs.get('report')}")
    return report
