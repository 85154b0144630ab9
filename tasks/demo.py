"""Generating the built-in demo dataset as a Prefect task."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from mlcore.data.demo import make_demo_dataset


@task(name="make-demo-data", cache_policy=NONE)
def make_demo_data_task(output: str, mode: str = "both", num_images: int = 24, seed: int = 0) -> str:
    return str(make_demo_dataset(output, mode=mode, num_images=num_images, seed=seed))
