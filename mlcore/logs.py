"""Logging for mlcore: one console handler, one rotating file, context fields per scope, TensorBoard scalars.

Everything mlcore logs goes through the ``mlcore`` logger (``get_logger(__name__)``). ``setup_logging`` owns that
logger's handlers; nothing here touches the root logger or imports Prefect. To see mlcore records in a Prefect run,
the orchestrator adds ``mlcore`` to ``PREFECT_LOGGING_EXTRA_LOGGERS``; the context fields travel with the records.

    setup_logging("INFO", log_file="logs/mlcore.log")
    log = get_logger(__name__)
    with log_context(stage="validate", run_id="abc"), log_duration(log, "validation"):
        log.info("checked %d images", 120)
    # file: 2026-11-26 03:00:00,000 INFO     mlcore.data [stage=validate run=abc] checked 120 images
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mlcore.errors import MlcoreError

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

ROOT_LOGGER_NAME = "mlcore"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

FILE_FORMAT = "%(asctime)s %(levelname)-8s %(name)s %(mlcore_context)s%(message)s"
CONSOLE_FORMAT = "%(levelname)-7s %(mlcore_context)s%(message)s"
RICH_FORMAT = "%(mlcore_context)s%(message)s"

# Short names keep file lines readable; any other field is shown under its own name.
_DISPLAY_NAMES = {"run_id": "run"}

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("mlcore_log_context", default=_EMPTY)

# Marks the handlers setup_logging installed, so a second call replaces them instead of adding more.
_OWNED = "_mlcore_owned"


class ContextFilter(logging.Filter):
    """Copy the current ``log_context`` fields onto each record (``record.mlcore_context`` as ``[k=v ...] ``).

    It sits on handlers, not on the logger, because logger filters do not see records from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        record.mlcore_fields = dict(fields)
        record.mlcore_context = format_context(fields)
        return True


def format_context(fields: Mapping[str, Any]) -> str:
    """``{"stage": "validate", "run_id": "abc"}`` -> ``"[stage=validate run=abc] "``; empty -> ``""``."""
    if not fields:
        return ""
    parts = " ".join(f"{_DISPLAY_NAMES.get(key, key)}={value}" for key, value in fields.items())
    return f"[{parts}] "


def current_context() -> dict[str, Any]:
    """The fields of the innermost ``log_context`` scope (a copy), e.g. to hand to a worker thread."""
    return dict(_context.get())


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add ``fields`` to every record logged inside the block; nested scopes merge, leaving restores.

    A field set to ``None`` is removed for the duration of the inner scope.
    """
    merged = {**_context.get(), **fields}
    merged = {key: value for key, value in merged.items() if value is not None}
    token = _context.set(MappingProxyType(merged))
    try:
        yield dict(merged)
    finally:
        _context.reset(token)


def get_logger(name: str | None = None) -> logging.Logger:
    """A logger under ``mlcore`` so setup_logging's handlers see it: ``"tasks.train"`` -> ``mlcore.tasks.train``."""
    if not name or name == ROOT_LOGGER_NAME:
        return logging.getLogger(ROOT_LOGGER_NAME)
    if name.startswith(ROOT_LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER_NAME}.{name}")


def setup_logging(
    level: int | str = "INFO",
    log_file: str | os.PathLike[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
    *,
    console: bool = True,
) -> logging.Logger:
    """Install mlcore's console and (optional) rotating file handlers; calling again replaces them.

    The console handler writes to stderr (stdout stays free for command output): rich's handler when stderr is a
    terminal, a plain one-line format otherwise (CI, pipes, Prefect workers). The file keeps at most ``backups``
    rotated copies of ``max_bytes`` each. The ``mlcore`` logger stops propagating to the root logger so a root
    configured elsewhere does not print every line twice.
    """
    logger = logging.getLogger(ROOT_LOGGER_NAME)
    console_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    # The file keeps everything from DEBUG up; `level` only quiets the console. INFO stays on at the logger so an
    # orchestrator's handlers (Prefect's run logs) still get progress lines when the console is quiet.
    logger.setLevel(logging.DEBUG if log_file is not None else min(console_level, logging.INFO))
    for handler in [h for h in logger.handlers if getattr(h, _OWNED, False)]:
        logger.removeHandler(handler)
        handler.close()

    handlers: list[logging.Handler] = []
    if console:
        console_handler = _console_handler()
        console_handler.setLevel(console_level)
        handlers.append(console_handler)
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(file_handler)

    for handler in handlers:
        handler.addFilter(ContextFilter())
        setattr(handler, _OWNED, True)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def _console_handler() -> logging.Handler:
    stream = sys.stderr
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=True, markup=False
        )
        handler.setFormatter(logging.Formatter(RICH_FORMAT))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    return handler


def format_seconds(seconds: float) -> str:
    """``0.42`` -> ``"0.42 s"``, ``75`` -> ``"1 min 15 s"``, ``3725`` -> ``"1 h 02 min 05 s"``."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s"


@contextlib.contextmanager
def log_duration(logger: logging.Logger, what: str, level: int = logging.INFO) -> Iterator[None]:
    """Log ``"<what> took 1.23 s"`` when the block ends, or ``"<what> failed after ..."`` (and re-raise)."""
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.log(max(level, logging.WARNING), "%s failed after %s", what, format_seconds(time.perf_counter() - start))
        raise
    logger.log(level, "%s took %s", what, format_seconds(time.perf_counter() - start))


@contextlib.contextmanager
def tensorboard_writer(log_dir: str | os.PathLike[str], **writer_kwargs: Any) -> Iterator[SummaryWriter]:
    """A TensorBoard ``SummaryWriter`` writing under ``log_dir``, flushed and closed when the block ends."""
    try:
        # Imported here: torch takes seconds to import and most mlcore commands never write TensorBoard events.
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise MlcoreError(
            f"TensorBoard logging is unavailable: {exc}",
            fix="install mlcore from requirements.lock (it pins torch and tensorboard)",
        ) from exc
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(log_dir), **writer_kwargs)
    try:
        yield writer
    finally:
        writer.flush()
        writer.close()


def log_scalars(writer: SummaryWriter, step: int, **scalars: Any) -> None:
    """``log_scalars(w, 10, loss=0.3, **{"map/50": 0.61})``; accepts floats, ints, numpy and 0-d tensors; skips None."""
    for name, value in scalars.items():
        if value is None:
            continue
        writer.add_scalar(name, float(value), global_step=step)
