"""The Prefect UI as the product's console, tried as a new user would, in a real Chromium.

A real server on a port other than 4200 (PREFECT_API_URL in its own environment, as docs/DEPLOYING.md says), the
project's work pools and `prefect deploy --all`; then, in the browser: training-pipeline's Custom run form (plain
inputs, the server's message naming 32 for imgsz 100), one tiny run submitted from it and run by `prefect worker
start --run-once`, the run's page and every artifact it links to: each picture loads, no table runs past the page.

Skips where no Chromium is installed (scripts/setup_environment.sh installs the distribution's package as root).
"""

from __future__ import annotations

import importlib.util
import subprocess

import httpx
import pytest

from tests.integration.prefect_ui import PrefectUI, browser_page, chromium, ui_address
from tests.integration.test_annotation_sensor import TEMPLATES, api, deployment_id
from tests.integration.test_deployments import PREFECT, PROJECT, prefect, prefect_env  # noqa: F401 (a fixture)
from tests.integration.test_training_deployment import operator_env, reaper  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium() is None, reason="no chromium executable on PATH: install the distribution's "
                       "package (apt-get install chromium; scripts/setup_environment.sh does so as root)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (the test extra: make setup)"),
]
TRAINING = "training-pipeline/training-pipeline"
# One tiny run: about 1.5 minutes on an idle two-core machine.
TINY = {"teacher_preset": "tiny", "teacher_epochs": 1, "student_epochs": 1, "device": "cpu", "demo_images": 12,
        "benchmark_runs": 1}
EXPECTED_ARTIFACTS = {"training-pipeline-report", "model-comparison", "pipeline-stages", "model-scores",
                      "training-pipeline-progress", "teacher-training", "student-distillation", "model-export",
                      "dataset-validation", "stored-run", "stored-run-manifest"}


def test_a_run_from_the_form_shows_its_whole_story_on_its_page(operator_env, tmp_path):  # noqa: F811
    env = operator_env
    address = ui_address(env)
    assert httpx.get(f"{address}/ui-settings", timeout=10).json()["api_url"] == env["PREFECT_API_URL"]  # not :4200
    for pool in ("mlcore-cpu", "mlcore-gpu"):
        prefect(env, "work-pool", "create", pool, "--type", "process",
                "--base-job-template", str(TEMPLATES / "process.json"))
    prefect(env, "deploy", "--all")
    training = deployment_id(env, TRAINING)
    run_dir, store = tmp_path / "run", tmp_path / "store"

    with browser_page() as page:
        v1, v2 = PrefectUI(page, address, "v1"), PrefectUI(page, address, "v2")
        for ui in (v1, v2):  # v2: where the server's address leads; v1: one click away ("Switch to V1 UI")
            ui.open_run_form(training)
            assert len(ui.parameter_labels()) == 27, ui.parameter_labels()
            assert 'Property is type "None"' not in page.inner_text("body")  # every parameter a plain input
            ui.fill({"imgsz": 100})
            rejected = ui.submit()
            assert "100 is not a multiple of 32" in rejected, (ui.version, rejected)

        v2.open_run_form(training)
        v2.fill({"output": run_dir, "store": store, **TINY, "imgsz": 100})
        assert "100 is not a multiple of 32" in v2.submit()
        v2.fill({"imgsz": 128})
        accepted = v2.submit()
        assert "scheduled to start now" in accepted, accepted
        run_id = v2.submitted_run_id()
        parameters = api(env, "GET", f"/flow_runs/{run_id}")["parameters"]
        assert parameters["imgsz"] == 128 and parameters["data"] == "" and parameters["store"] == str(store)

        worker = subprocess.run([PREFECT, "worker", "start", "--pool", "mlcore-gpu", "--run-once"], cwd=PROJECT,
                                env=env, capture_output=True, text=True, timeout=1500)
        state = api(env, "GET", f"/flow_runs/{run_id}")["state"]
        assert state["type"] == "COMPLETED", f"{state}\n{(worker.stdout + worker.stderr)[-6000:]}"
        artifacts = {artifact["id"]: artifact for artifact in api(env, "POST", "/artifacts/filter", {
            "artifacts": {"flow_run_id": {"any_": [run_id]}}})}

        for ui in (v2, v1):
            pages = ui.run_artifact_pages(run_id)
            shown = {artifacts[url.rsplit("/", 1)[-1]]["key"]: url for url in pages}
            assert EXPECTED_ARTIFACTS <= set(shown), (ui.version, sorted(shown))
            pictures = 0
            for url in pages:
                key = artifacts[url.rsplit("/", 1)[-1]]["key"]
                layout = ui.artifact_layout(url)
                where = f"{ui.version} {key} ({url})"
                for table in layout["tables"]:
                    assert table["past_edge"] <= 0 and not table["scrolls"], f"{where}: a table overflows: {table}"
                for picture in layout["images"]:
                    assert picture["loaded"] and picture["natural_width"] > 0, f"{where}: a broken picture: {picture}"
                if key == "training-pipeline-report":
                    pictures += len(layout["images"])
                if key == "stored-run":
                    assert str(store) in layout["text"] and "file://" not in layout["text"], layout["text"]
            # each version of the report (written, then stored) shows the latency / accuracy chart
            assert pictures >= 2, (ui.version, pictures)
    assert (run_dir / "benchmark" / "report.png").is_file()
