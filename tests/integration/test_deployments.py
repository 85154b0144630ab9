"""prefect.yaml as an operator uses it: a real server, `prefect deploy`, `prefect deployment run`, a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.data.demo import make_demo_dataset
from tests.integration.servers import prefect_server

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture
def prefect_env(tmp_path):
    with prefect_server(tmp_path / "prefect-home", project=PROJECT) as env:
        yield env


def prefect(env, *args: str, timeout: int = 300) -> str:
    result = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=PROJECT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_validate_dataset_deployment_runs_on_a_worker(prefect_env, tmp_path):
    for pool in ("mlcore-cpu", "mlcore-gpu"):
        prefect(prefect_env, "work-pool", "create", pool, "--type", "process")
    deployed = prefect(prefect_env, "deploy", "--all")
    assert "validate-dataset/validate-dataset" in deployed and "training-pipeline/training-pipeline" in deployed

    data = make_demo_dataset(tmp_path / "demo", num_images=6)
    out = tmp_path / "out"
    prefect(prefect_env, "deployment", "run", "validate-dataset/validate-dataset",
            "--param", f"data={data}", "--param", f"output={out}")
    prefect(prefect_env, "worker", "start", "--pool", "mlcore-cpu", "--run-once", timeout=600)

    mode_config = json.loads((out / ".mode_config.json").read_text())
    assert mode_config["annotation_mode"] == "detection_and_segmentation"
    assert (out / "train.json").is_file()  # the deployment's default split parameter was applied
