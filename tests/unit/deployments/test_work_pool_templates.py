"""deployments/*.json: base job templates a Prefect server accepts, built on Prefect's defaults, asking for GPUs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import prefect.server.api
import pytest
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration

TEMPLATES = Path(__file__).resolve().parents[3] / "deployments"
# What `prefect work-pool get-default-base-job-template --type T` prints offline: the metadata bundled with Prefect.
WORKER_METADATA = Path(prefect.server.api.__file__).parent / "collections_data/views/aggregate-worker-metadata.json"
KINDS = {"process.json": ("prefect", "process"), "docker-gpu.json": ("prefect-docker", "docker"),
         "kubernetes-gpu.json": ("prefect-kubernetes", "kubernetes")}


def template(name: str) -> dict[str, Any]:
    return json.loads((TEMPLATES / name).read_text())


def rendered_with_defaults(base: dict[str, Any], job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job configuration a worker builds for a deployment that sets `job_variables` (env is merged)."""
    values = BaseJobConfiguration._get_base_config_defaults(base["variables"]["properties"])
    env = {**values.get("env", {}), **(job_variables or {}).get("env", {})}
    return apply_values(base["job_configuration"], {**values, **(job_variables or {}), "env": env})


@pytest.mark.parametrize("name", sorted(KINDS))
def test_template_is_prefects_default_plus_ours_and_the_server_accepts_it(name: str) -> None:
    collection, kind = KINDS[name]
    default = json.loads(WORKER_METADATA.read_text())[collection][kind]["default_base_job_configuration"]
    ours = template(name)
    WorkPoolCreate(name="mlcore-test", type=kind, base_job_template=ours)  # the server's own validation
    assert set(default["job_configuration"]) <= set(ours["job_configuration"])
    assert set(default["variables"]["properties"]) <= set(ours["variables"]["properties"])


def test_docker_pool_gives_containers_every_gpu_and_shared_memory() -> None:
    job = rendered_with_defaults(template("docker-gpu.json"), {"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": "mlcore"}})
    kwargs = job["container_create_kwargs"]
    assert kwargs["device_requests"] == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert kwargs["shm_size"] == "8g"
    assert job["image"] == "mlcore:gpu"
    assert job["env"]["MLCORE_PROJECT_DIR"] == "/app"  # prefect.yaml's pull step runs the code baked into the image


def test_kubernetes_pool_asks_for_a_gpu_per_flow_run() -> None:
    job = rendered_with_defaults(template("kubernetes-gpu.json"))
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    job = rendered_with_defaults(template("kubernetes-gpu.json"), {"gpu_limit": "2", "cpu_limit": "8"})
    limits = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "2", "cpu": "8"}
