"""The validate-dataset flow on a real Prefect server (the main job: test_pipeline_flow.py)."""

from __future__ import annotations

import json

import pytest

from mlcore.data.demo import make_demo_dataset

pytestmark = pytest.mark.integration


def test_validate_flow_writes_outputs_and_an_artifact(prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.validate_dataset import validate_dataset

    data = make_demo_dataset(tmp_path / "demo", num_images=10)
    report = validate_dataset(str(data), output=str(tmp_path / "out"))
    assert report.usable and report.splits and (tmp_path / "out" / ".mode_config.json").is_file()

    import anyio

    async def latest_artifact():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dataset-validation"])))

    artifacts = anyio.run(latest_artifact)
    assert any("Dataset validation: usable" in (a.data or "") for a in artifacts)


def test_mlcore_log_lines_reach_the_flow_run_logs(prefect_server, tmp_path):
    import time

    import anyio
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.validate_dataset import validate_dataset

    data = make_demo_dataset(tmp_path / "demo", num_images=4)
    state = validate_dataset(str(data), output=str(tmp_path / "out"), return_state=True)
    flow_run_id = state.state_details.flow_run_id

    async def read_logs():
        async with get_client() as client:
            return await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))

    deadline = time.monotonic() + 30  # logs are shipped to the API in the background
    while time.monotonic() < deadline:
        if any(log.name == "mlcore.data.prepare" and "validating" in log.message for log in anyio.run(read_logs)):
            return
        time.sleep(1)
    pytest.fail("mlcore's 'validating ...' line never reached the flow run's logs")


def test_validate_flow_fails_on_an_unusable_dataset(prefect_server, tmp_path):
    from flows.validate_dataset import validate_dataset

    data = make_demo_dataset(tmp_path / "demo", num_images=4)
    broken = json.loads(data.read_text())
    broken["images"][0]["file_name"] = "../escape.jpg"
    data.write_text(json.dumps(broken))
    state = validate_dataset(str(data), return_state=True)
    assert state.is_failed()
    assert "images[0].file_name" in state.message and "leaves the image folder" in state.message


def test_unreadable_input_fails_the_run_with_the_reason(prefect_server, tmp_path):
    from flows.validate_dataset import validate_dataset

    state = validate_dataset(str(tmp_path / "missing.json"), return_state=True)
    assert state.is_failed() and "annotation file not found" in state.message
