"""training-pipeline with its shards on the Dask cluster at MLCORE_DASK_ADDRESS: the deployment entry point for
multi-machine runs (a task runner is fixed when the flow is loaded, so the address comes from the worker's
environment; docs/SCALING.md)."""

from __future__ import annotations

import os

from flows.pipeline import training_pipeline
from flows.shards import with_task_runner

training_pipeline_dask = with_task_runner(training_pipeline, os.environ.get("MLCORE_DASK_ADDRESS"))
