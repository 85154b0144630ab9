"""`mlcore pipeline --data s3://... --store s3://... --aws-credentials BLOCK`, end to end, with no AWS_* environment.

The dataset lies in a real S3 endpoint on loopback (moto's server); the only way to it is an AwsCredentials block on
the session's Prefect server, which the CLI run reports to (PREFECT_API_URL). One tiny run: fetch -> ... -> store.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import anyio
import pytest

from tests.integration.test_s3_credentials import (KEY_ID, SECRET, flow_run_records, new_bucket, save_block,
                                                   upload_demo, without_aws)
from tests.unit.storage.conftest import moto_endpoint  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
IMAGES = 12  # the demo's split (0.7, 0.15, 0.15) leaves the test part empty with fewer
# As small as the pipeline allows, so the run takes a couple of minutes on two cores.
TINY = ["--teacher-preset", "tiny", "--teacher-epochs", "1", "--student-epochs", "1", "--imgsz", "64",
        "--quantize", "none", "--benchmark-runs", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def s3_run(prefect_server, moto_endpoint, tmp_path_factory) -> dict[str, Any]:  # noqa: F811
    import os

    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("s3-pipeline")
    bucket = new_bucket(moto_endpoint)
    url = upload_demo(moto_endpoint, bucket, root / "demo", images=IMAGES)
    block = save_block(moto_endpoint)
    env = without_aws(dict(os.environ), root)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the session's server, where the block is
    command = [sys.executable, "-m", "mlcore.cli.app", "pipeline", "--data", url, "--store", f"s3://{bucket}/runs",
               "--aws-credentials", block, "--output", str(root / "run"), *TINY]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"bucket": bucket, "url": url, "block": block, "run_dir": root / "run", "result": result}


def test_the_dataset_is_fetched_from_s3_and_the_run_stored_there(s3_run) -> None:
    from mlcore.storage import open_store, verify_manifest
    from tasks.aws import s3_client_options

    stdout, run_dir = s3_run["result"].stdout, s3_run["run_dir"]
    assert "fetch (ran" in stdout and "validate (ran" in stdout
    source = run_dir / "source" / s3_run["bucket"] / "demo"
    assert (source / "annotations.json").is_file() and len(list((source / "images").iterdir())) == IMAGES
    stored_url = re.search(r"stored: (s3://\S+)", stdout).group(1)
    assert stored_url.startswith(f"s3://{s3_run['bucket']}/runs/")

    store = open_store(f"s3://{s3_run['bucket']}/runs", **s3_client_options(s3_run["block"]))
    manifest = verify_manifest(store, stored_url.rsplit("/", 1)[-1])  # every stored object's bytes hashed again

    assert manifest.lineage.dataset_source == s3_run["url"]  # trained on the local copy; named by where it came from
    assert {"student/best.pt", "export/model.onnx", "prepared/.mode_config.json", "report.md"} <= {
        entry.key for entry in manifest.files}
    assert f"data: `{s3_run['url']}`" in (run_dir / "report.md").read_text()  # the settings name the S3 dataset


def test_no_secret_in_output_reports_manifest_logs_or_artifacts(s3_run) -> None:
    from mlcore.storage import open_store
    from tasks.aws import s3_client_options

    result, run_dir = s3_run["result"], s3_run["run_dir"]
    store = open_store(f"s3://{s3_run['bucket']}/runs", **s3_client_options(s3_run["block"]))
    run_id = re.search(r"stored: s3://\S+/runs/(\S+)", result.stdout).group(1)
    records = flow_run_records(_flow_run_id(s3_run["url"]))
    assert f"mirrored {s3_run['url']}" in records and "stored-run" in records  # its logs and artifacts were read

    published = "\n".join([result.stdout, result.stderr, (run_dir / "report.md").read_text(),
                           (run_dir / "report.html").read_text(), store.read_bytes(f"{run_id}/manifest.json").decode(),
                           records])
    for secret in (SECRET, KEY_ID):
        assert secret not in published


def _flow_run_id(data_url: str) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read() -> Any:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["training-pipeline"])))
        return [run.id for run in runs if run.parameters.get("data") == data_url]

    found = anyio.run(read)
    assert len(found) == 1, found
    return found[0]
