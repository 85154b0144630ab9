"""`validate-dataset`: check a COCO dataset; the run fails, naming the errors, when the data is not usable."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.states import Failed, State

from mlcore.data.prepare import DatasetReport
from tasks.validate import unusable_dataset_state, validate_dataset_task


@flow(name="validate-dataset", log_prints=True)
def validate_dataset(
    data: str,
    images: str | None = None,
    output: str | None = None,
    split: str | None = "train:0.7,val:0.15,test:0.15",
    seed: int = 42,
    image_check: Literal["full", "header", "none"] = "header",
    mode: Literal["detection_only", "segmentation_only", "detection_and_segmentation"] | None = None,
    keep_empty_classes: bool = False,
    configs_dir: str | None = None,
) -> DatasetReport | State:
    """Validate DATA (a COCO JSON); write the cleaned copy, mode config and splits beside it or into OUTPUT.

    MODE forces the annotation mode (default: detected); CONFIGS_DIR also writes the active configs for the mode.
    """
    state = validate_dataset_task(data, images=images, output=output, split=split, seed=seed,
                                  image_check=image_check, mode=mode, keep_empty_classes=keep_empty_classes,
                                  configs_dir=configs_dir, return_state=True)
    if state.is_failed():  # a new state: returning the task's own would read "1/1 states failed"
        return Failed(message=state.message)
    report = state.result()
    return report if report.usable else unusable_dataset_state(report)
