"""Generating the built-in demo dataset (shapes in the field, with an unlabelled pool) as a Prefect task."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from mlcore.data.demo import make_field_dataset


@task(name="make-demo-data", cache_policy=NONE)
def make_demo_data_task(output: str, mode: str = "both", num_images: int = 24, unlabeled: int = 0,
                        seed: int = 0) -> str:
    """OUTPUT/annotations.json and images/, and OUTPUT/unlabeled/ with UNLABELED pool images; returns the JSON."""
    return str(make_field_dataset(output, mode=mode, num_images=num_images, unlabeled=unlabeled, seed=seed))
