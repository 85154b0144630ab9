"""Teacher labelling of one image shard as a Prefect task: a thin wrapper over `student_setup.label_teacher_shard`.

Mapped over shard indices (flows/shards.py), several workers share the labelling the distill step would otherwise do
alone; they all write into one teacher-label folder, which the workers and the distill step must see at the same path.
"""

from __future__ import annotations

from prefect import task
from prefect.states import Failed, State

from mlcore.distill.labelling import LabelledShard
from mlcore.distill.setup import label_teacher_shard
from mlcore.errors import MlcoreError
from mlcore.finetune.records import TeacherTrainingResult
from tasks.policy import release_accelerator_memory, retry_transient, stage_cache_key
from tasks.train_teacher import teachers_folder

TIMEOUT_SECONDS = 12 * 3600


# Cached like the distill step (data, teachers' record, configs) plus the shard; a retry or a rerun relabels only
# what is missing, since the label files themselves are the real cache. Pass the distill step's data, image folders,
# unlabeled images and configs: they decide which images are labelled and the labels' file names.
@task(name="label-teacher-shard", retries=2, retry_delay_seconds=30, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("data", "val", "config_files"), persist_result=True,
      timeout_seconds=TIMEOUT_SECONDS)
def label_teacher_shard_task(
    data: str,
    val: str,
    teachers: str | TeacherTrainingResult,
    cache: str,
    shard: int = 0,
    shards: int = 1,
    unlabeled: str | None = None,
    device: str | None = None,
    config_files: list[str] | None = None,
    images: str | None = None,
    val_images: str | None = None,
) -> LabelledShard | State:
    teachers_dir = teachers_folder(teachers)
    try:
        return label_teacher_shard(data, val, teachers=teachers_dir, teacher_cache=cache, shard=shard, shards=shards,
                                   images=images, val_images=val_images, unlabeled=unlabeled, device=device,
                                   config_files=config_files or [], progress=False)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
