"""A parent flow off the GPU pool runs the teachers stage as the `train-teachers` deployment on the GPU pool.

A real server, the project's work-pool template and `prefect deploy --all`, a real worker on mlcore-gpu; the parent
flow runs in this process. The child trains into a run folder both share (here: the same disk), the parent reads
the child's result from it, and the same stage in-process afterwards is a cache hit with an equal result.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic_core import to_jsonable_python

from flows.gpu_stages import distill_stage, gpu_stage, run_gpu_stage
from mlcore.data.demo import make_demo_dataset
from mlcore.data.prepare import prepare_dataset
from mlcore.finetune.records import TeacherRun, TeacherTrainingResult
from tasks.policy import STAGE_MARKER
from tests.integration.test_annotation_sensor import TEMPLATES, api, deployment_id, flow_runs, worker
from tests.integration.test_deployments import prefect, prefect_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
TEACHERS = "train-teachers/train-teachers"


@contextlib.contextmanager
def talking_to(env: dict[str, str]) -> Iterator[None]:
    """This process's Prefect client on the test's server. Its log and event senders are drained while the server is
    up: left alone they retry against the closed port when the session ends, for minutes."""
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        try:
            yield
        finally:
            APILogWorker.drain_all()
            EventsWorker.drain_all()


@flow(name="parent-off-the-gpu")
def parent(parameters: dict[str, Any], via_deployment: bool) -> tuple[str, TeacherTrainingResult]:
    """What the pipeline does with its teachers stage: run it (here or as the deployment), then use its record."""
    state = gpu_stage("train-teachers", via_deployment=via_deployment, poll_seconds=1)(**parameters,
                                                                                       return_state=True)
    return state.name, state.result()


def test_the_teachers_stage_runs_as_a_deployment_and_returns_its_result(prefect_env, tmp_path):  # noqa: F811
    env = prefect_env
    for pool in ("mlcore-cpu", "mlcore-gpu"):
        prefect(env, "work-pool", "create", pool, "--type", "process",
                "--base-job-template", str(TEMPLATES / "process.json"))
    assert TEACHERS in prefect(env, "deploy", "--all")
    data = make_demo_dataset(tmp_path / "demo", num_images=8, negatives=0)
    run_dir = tmp_path / "run"
    splits = prepare_dataset(data, output_dir=run_dir / "prepared", split="train:0.5,val:0.5", progress=False).outputs
    parameters = {"data": splits["train"], "val": splits["val"], "output": str(run_dir / "teachers"),
                  "preset": "tiny", "device": "cpu", "epochs": 1}
    missing = {**parameters, "data": str(tmp_path / "missing" / "train.json"), "output": str(tmp_path / "bad" / "t")}

    with worker(env, "mlcore-gpu", tmp_path / "worker.log"), talking_to(env):
        first = parent(parameters, via_deployment=True, return_state=True)
        local_name, local = parent(parameters, via_deployment=False)
        failed = parent(missing, via_deployment=True, return_state=True)

    # The child trained on the worker, as a subflow of the parent, with the parent's parameters.
    children = flow_runs(env, deployment_id(env, TEACHERS))
    assert [child["parameters"] for child in children] == [parameters, missing]
    assert children[0]["state"]["type"] == "COMPLETED"
    link = api(env, "GET", f"/task_runs/{children[0]['parent_task_run_id']}")
    assert link["flow_run_id"] == str(first.state_details.flow_run_id)
    name, remote = first.result()
    assert name == "Completed" and remote.output_dir == run_dir / "teachers"
    assert set(remote.adapters) == {"grounding_dino", "sam"}
    assert all((adapter / "adapter_config.json").is_file() for adapter in remote.adapters.values())
    # The same stage in-process is a cache hit on the child's result, in the run folder both share.
    assert local_name == "Cached" and local == remote
    # A failing child fails the parent's stage with the child's message.
    assert children[1]["state"]["type"] == "FAILED"
    assert failed.is_failed() and "no .mode_config.json beside the training data" in failed.message
    assert children[1]["state"]["message"] in failed.message


def test_the_distill_deployment_keeps_the_students_cache_key(prefect_server, tmp_path):
    """The teachers' record travels to the child as JSON; the student stage there must get the cache key it gets
    in-process, or a pipeline switched to deployments would train its student again. The stage writes its key into
    its folder first (missing data then fails it at once): the same key keeps the folder, another moves it aside."""
    run = TeacherRun(family="sam", preset="tiny", adapter_dir=tmp_path / "teachers" / "sam_lora",
                     best_metric="mean_iou", best=0.25, best_epoch=0, epochs=[{"epoch": 0, "mean_iou": 0.25}],
                     lora={"trainable": 8, "trainable_modules": ("a.q_proj", "a.v_proj")}, timings={"train": 1.5},
                     resumed_from=None, train_images=4, val_images=4, baseline={"mean_iou": 0.125},
                     baseline_per_class={0: 0.1, 1: None})
    teachers = TeacherTrainingResult(tmp_path / "teachers", "segmentation_only", "cpu", {"sam": run})
    output = tmp_path / "run" / "student"
    arguments = {"data": str(tmp_path / "missing" / "train.json"), "val": str(tmp_path / "missing" / "val.json"),
                 "teachers": teachers, "output": str(output), "student": None, "epochs": 2, "imgsz": None,
                 "device": "cpu"}  # what the pipeline passes

    local = run_gpu_stage("distill", arguments, via_deployment=False)
    key = json.loads((output / STAGE_MARKER).read_text())["key"]
    remote = distill_stage(**to_jsonable_python(arguments), return_state=True)  # as the worker runs the child

    assert local.is_failed() and remote.is_failed()
    assert remote.message == local.message  # the child's own message, nothing added
    assert json.loads((output / STAGE_MARKER).read_text())["key"] == key
    assert not output.with_name("student.previous").exists()
