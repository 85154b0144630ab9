"""mlcore.logs: rotating file logs, scoped context fields, idempotent setup, TensorBoard scalars."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlcore.logs import (
    format_seconds,
    get_logger,
    log_context,
    log_duration,
    log_scalars,
    setup_logging,
    tensorboard_writer,
)


@pytest.fixture(autouse=True)
def restore_mlcore_logger():
    """setup_logging changes the process-wide ``mlcore`` logger: put it back as it was after each test."""
    logger = logging.getLogger("mlcore")
    saved = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:] = saved[0]
    logger.level, logger.propagate, logger.disabled = saved[1:]


def read_log(path: Path) -> list[str]:
    for handler in logging.getLogger("mlcore").handlers:
        handler.flush()
    return path.read_text(encoding="utf-8").splitlines()


def test_file_handler_rotates_and_keeps_only_the_backups(tmp_path):
    log_file = tmp_path / "logs" / "mlcore.log"
    setup_logging("DEBUG", log_file=log_file, max_bytes=400, backups=2, console=False)
    log = get_logger("mlcore.test")
    for i in range(60):
        log.info("line %03d with some padding to fill the file", i)

    assert sorted(p.name for p in log_file.parent.iterdir()) == ["mlcore.log", "mlcore.log.1", "mlcore.log.2"]
    assert all(p.stat().st_size <= 400 for p in log_file.parent.iterdir())
    assert read_log(log_file)[-1].endswith("line 059 with some padding to fill the file")


def test_file_records_carry_timestamp_level_name_and_scoped_context(tmp_path):
    log_file = tmp_path / "mlcore.log"
    setup_logging("INFO", log_file=log_file, console=False)
    log = get_logger("mlcore.data")

    with log_context(stage="validate", run_id="abc"):
        log.info("inside")
        with log_context(split="val"):
            log.info("nested")
        log.info("after nested")
    log.info("outside")

    lines = read_log(log_file)
    assert len(lines) == 4
    assert lines[0].endswith("INFO     mlcore.data [stage=validate run=abc] inside")
    assert lines[0][:4].isdigit()  # starts with the timestamp
    assert lines[1].endswith("[stage=validate run=abc split=val] nested")
    assert lines[2].endswith("[stage=validate run=abc] after nested")
    assert lines[3].endswith("mlcore.data outside")
    assert "[" not in lines[3]


def test_context_is_restored_when_the_block_raises(tmp_path):
    log_file = tmp_path / "mlcore.log"
    setup_logging(log_file=log_file, console=False)
    log = get_logger("mlcore")
    with pytest.raises(RuntimeError), log_context(stage="train"):
        raise RuntimeError("boom")
    log.info("later")
    assert "stage=train" not in read_log(log_file)[-1]


def test_setup_twice_replaces_handlers_instead_of_duplicating(tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    setup_logging(log_file=first)
    setup_logging(log_file=second)
    logger = logging.getLogger("mlcore")
    # Handlers others attach (Prefect forwards `mlcore` to its run logs) are not ours to count.
    owned = [handler for handler in logger.handlers if getattr(handler, "_mlcore_owned", False)]
    assert len(owned) == 2  # one console, one file
    get_logger("mlcore.x").warning("once")
    assert read_log(second) == [line for line in read_log(second) if "once" in line]
    assert len(read_log(second)) == 1
    assert read_log(first) == []


def test_console_is_plain_and_concise_when_not_a_terminal(tmp_path, capsys):
    setup_logging("INFO")
    with log_context(stage="export"):
        get_logger("mlcore.onnx").info("wrote model.onnx")
    get_logger("mlcore.onnx").debug("hidden below INFO")
    err = capsys.readouterr().err
    assert err == "INFO    [stage=export] wrote model.onnx\n"


def test_get_logger_puts_outside_names_under_mlcore():
    assert get_logger("tasks.train").name == "mlcore.tasks.train"
    assert get_logger("mlcore.data.coco").name == "mlcore.data.coco"
    assert get_logger().name == "mlcore"


def test_log_duration_reports_success_and_failure(tmp_path):
    log_file = tmp_path / "mlcore.log"
    setup_logging(log_file=log_file, console=False)
    log = get_logger("mlcore.timing")
    with log_duration(log, "calibration"):
        pass
    with pytest.raises(ValueError), log_duration(log, "export"):
        raise ValueError("bad opset")
    lines = read_log(log_file)
    assert "INFO" in lines[0] and "calibration took " in lines[0] and lines[0].endswith(" s")
    assert "WARNING" in lines[1] and "export failed after " in lines[1]


def test_format_seconds_reads_naturally():
    assert format_seconds(0.5) == "0.50 s"
    assert format_seconds(75) == "1 min 15 s"
    assert format_seconds(3725) == "1 h 02 min 05 s"


def test_tensorboard_scalars_round_trip(tmp_path):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "tb"
    with tensorboard_writer(log_dir) as writer:
        for step, loss in enumerate([1.0, 0.5, 0.25]):
            log_scalars(writer, step, loss=loss, **{"metrics/map50": np.float32(0.1 * step)}, skipped=None)

    assert list(log_dir.glob("events.out.tfevents.*")), "no event file written"
    events = EventAccumulator(str(log_dir))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["loss", "metrics/map50"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert [e.value for e in events.Scalars("metrics/map50")] == pytest.approx([0.0, 0.1, 0.2])
