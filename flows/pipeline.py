"""`training-pipeline`: the product's main job, one stage per task.

Today it runs: demo data (when no dataset is given) -> validate and split. Teacher fine-tuning, distillation,
export, evaluation and benchmarking join as their stages land; until then the run says where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.states import Failed, State
from pydantic import BaseModel

from mlcore.data.prepare import DatasetReport
from tasks.demo import make_demo_data_task
from tasks.validate import unusable_dataset_state, validate_dataset_task

STAGES_AVAILABLE = ("validate", "split")


class PipelineResult(BaseModel):
    workdir: str
    dataset: DatasetReport
    stages_run: list[str]

    @property
    def summary(self) -> str:
        report = self.dataset
        splits = ", ".join(f"{k} {v}" for k, v in report.splits.items()) or "none"
        return (f"dataset {report.dataset}: {report.annotation_mode}, {report.num_classes} classes, "
                f"{report.counts.get('warning', 0)} warning(s); splits: {splits}\n"
                f"outputs in {report.output_dir}\nstages run: {', '.join(self.stages_run)}")


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    data: str | None = None,
    images: str | None = None,
    workdir: str = "data/demo",
    split: str = "train:0.7,val:0.15,test:0.15",
    seed: int = 42,
) -> PipelineResult | State:
    """Run every available stage on DATA (a COCO JSON); without DATA, on a generated demo dataset in WORKDIR."""
    stages = []
    if data is None:
        data = make_demo_data_task(str(Path(workdir) / "dataset"), seed=seed)
        stages.append("demo-data")
    state = validate_dataset_task(data, images=images, output=str(Path(workdir) / "prepared"), split=split,
                                  seed=seed, return_state=True)
    if state.is_failed():  # a new state: returning the task's own would read "1/1 states failed"
        return Failed(message=state.message)
    report = state.result()
    stages += list(STAGES_AVAILABLE)
    if not report.usable:
        return unusable_dataset_state(report)
    return PipelineResult(workdir=workdir, dataset=report, stages_run=stages)
