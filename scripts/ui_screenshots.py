"""Screenshots of the Prefect UI for docs/DEPLOYING.md, made from a real run: the training-pipeline Custom run form,
a finished run's artifacts and its report.

    .venv/bin/python scripts/ui_screenshots.py [--output docs/images]

A temporary Prefect server on loopback (its own PREFECT_HOME), the project's work pools and deployments, a tiny
demo run submitted from the form (a few minutes on a CPU, everything under a temporary folder), run by `prefect
worker start --run-once`; then three PNGs, each under 400 KB. Needs the system Chromium (scripts/setup_environment.sh)
and the test extra (Playwright's Python package).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.prefect_ui import PrefectUI, browser_page, chromium, screenshot, ui_address, visit  # noqa: E402
from tests.integration.servers import prefect_server  # noqa: E402

PREFECT = str(Path(sys.executable).with_name("prefect"))
TINY = {"teacher_preset": "tiny", "teacher_epochs": 1, "student_epochs": 1, "imgsz": 128, "device": "cpu",
        "demo_images": 12, "benchmark_runs": 1}
FORM, RUN_PAGE, REPORT = "prefect-run-form.png", "prefect-run-page.png", "prefect-run-report.png"


def api(env: dict[str, str], path: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, data=data,
                                     headers={"Content-Type": "application/json"}, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def prefect(env: dict[str, str], *args: str) -> None:
    subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, check=True, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    output = parser.parse_args().output
    if chromium() is None:
        print("no chromium on PATH: install the distribution's package (scripts/setup_environment.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlcore-ui-screenshots-") as tmp, \
            prefect_server(Path(tmp) / "prefect-home", project=ROOT) as env:
        env = {**env, "YOLO_CONFIG_DIR": f"{tmp}/ultralytics", "MPLCONFIGDIR": f"{tmp}/matplotlib"}
        for pool in ("mlcore-cpu", "mlcore-gpu"):
            prefect(env, "work-pool", "create", pool, "--type", "process",
                    "--base-job-template", str(ROOT / "deployments" / "process.json"))
        prefect(env, "deploy", "--all")
        deployment = api(env, "/deployments/name/training-pipeline/training-pipeline")["id"]
        with browser_page() as page:
            ui = PrefectUI(page, ui_address(env), "v2")
            ui.open_run_form(deployment)
            ui.fill({"imgsz": 100})  # the form as a user meets it, refusing an image size that is no multiple of 32
            ui.submit()
            print("form:", screenshot(page, output / FORM))
            ui.fill({"output": f"{tmp}/run", "store": f"{tmp}/store", **TINY})
            answer = ui.submit()
            if "scheduled to start now" not in answer:
                print(f"the form refused the run: {answer}", file=sys.stderr)
                return 1
            run_id = ui.submitted_run_id()
            print("running the demo on a worker (a few minutes) ...")
            subprocess.run([PREFECT, "worker", "start", "--pool", "mlcore-gpu", "--run-once"], env=env, cwd=ROOT,
                           check=True, capture_output=True)
            state = api(env, f"/flow_runs/{run_id}")["state"]
            if state["type"] != "COMPLETED":
                print(f"the run ended {state['type']}: {state['message']}", file=sys.stderr)
                return 1
            ui.run_artifact_pages(run_id)
            page.mouse.move(0, 0)
            print("run page:", screenshot(page, output / RUN_PAGE))
            reports = api(env, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]},
                                                                   "key": {"any_": ["training-pipeline-report"]}},
                                                     "sort": "CREATED_DESC", "limit": 1})
            visit(page, f"{ui.base}/artifacts/artifact/{reports[0]['id']}")
            print("report:", screenshot(page, output / REPORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
