"""Latency of the teachers, the student and each export on the same images, as a Prefect task.

Accuracy comes from the evaluate stage (passed in as its records), so the benchmark only times: a few runs at
batch size 1 by default, enough for the report's comparison, not a full `mlcore benchmark`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.states import Failed, State

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import MlcoreError
from mlcore.evaluation.commands import model_format
from mlcore.evaluation.report import ComparisonReport, ReportEntry, comparison_report, size_mb
from mlcore.evaluation.speed import benchmark_speed
from mlcore.finetune.records import TeacherTrainingResult
from mlcore.reporting import ModelScores, rounded
from tasks.policy import release_accelerator_memory, retry_transient, stage_cache_key
from tasks.train_teacher import teachers_folder

TIMEOUT_SECONDS = 2 * 3600
# The model-comparison artifact: the columns a person compares on the run's page, under readable names (the full
# rows are in benchmark/report.json); the table must fit the page whole.
TABLE_COLUMNS = {"name": "model", "format": "format", "size_mb": "size MB", "map50_95": "mAP50-95",
                 "p50_ms": "p50 ms", "fps": "FPS", "speedup": "speed-up x"}


# Cached on the model files' and the split's content (timings of a finished run are reused as they were measured).
@task(name="benchmark-models", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("models", "data"), persist_result=True, timeout_seconds=TIMEOUT_SECONDS)
def benchmark_models_task(
    models: list[str],
    data: str,
    output: str,
    scores: list[ModelScores] | None = None,
    teachers: str | TeacherTrainingResult | None = None,
    runs: int = 5,
    warmup: int = 1,
    speed_images: int = 4,
    device: str = "auto",
    images: str | None = None,
) -> ComparisonReport | State:
    """report.md / report.json / report.png in OUTPUT; speed-up is against the teachers when they are timed.
    images: DATA's image folder (default: where validate recorded it, else found beside the JSON)."""
    accuracy = {score.name: score.metrics for score in scores or []}
    try:
        dataset = CocoDataset(data, images)
        sample = [dataset[index].image_path for index in range(min(speed_images, len(dataset)))]
        entries = []
        if teachers is not None:
            entries.append(_teachers_entry(teachers, data, sample, runs, device, accuracy.get("teachers")))
        for path in models:
            from mlcore.inference import load_engine

            engine = load_engine(path, device=device)
            entries.append(ReportEntry(name=Path(path).name, format=model_format(path), path=path,
                                       accuracy=accuracy.get(Path(path).name),
                                       speed=benchmark_speed(engine, sample, warmup=warmup, runs=runs,
                                                             batch_sizes=[1], name=Path(path).name)))
            del engine
        report = comparison_report(entries, output, title="Teacher vs student vs exports")
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    create_table_artifact([{header: rounded(row.get(key)) for key, header in TABLE_COLUMNS.items()}
                           for row in report.rows],
                          key="model-comparison", description="Accuracy on the test split, latency at batch 1; all "
                          f"columns in {report.files.get('json')}")
    return report


def _teachers_entry(teachers: str | TeacherTrainingResult, data: str, sample: list, runs: int, device: str,
                    accuracy: dict | None) -> ReportEntry:
    from mlcore.teachers.grounded_sam import GroundedSAM

    folder = teachers_folder(teachers)
    mode = ModeConfig.read(Path(data).parent / MODE_CONFIG_NAME)
    grounded_sam = GroundedSAM.from_pretrained(folder, mode, device=None if device == "auto" else device)
    speed = benchmark_speed(grounded_sam.predict, sample, warmup=1, runs=max(1, runs // 2), batch_sizes=[1],
                            name="teachers")
    adapters = teachers.adapters.values() if isinstance(teachers, TeacherTrainingResult) else []
    return ReportEntry(name="teachers", format="teacher", path=folder, accuracy=accuracy, speed=speed,
                       size_mb=sum(size_mb(path) or 0.0 for path in adapters) or None,
                       notes="GroundedSAM with the class names as prompts; size: the LoRA adapters")
