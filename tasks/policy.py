"""How pipeline stages are retried, cached and cleaned up after.

- Retries: only for transient failures (I/O and network errors, CUDA / runtime errors, out of memory). A user error
  (MlcoreError: a bad dataset, config or model) and a bug (anything else) fail at once; a stage that ran out of
  time is not retried either, as it would run out again.
- Cache keys: the stage name, the code version, the stage's parameters (upstream stages' records included), the
  sha256 of every input file the stage names and, for a prepared COCO file, its images' fingerprint (names, sizes,
  mtimes, recorded by validate), so a rerun with the same data, settings and code skips the stages that
  finished, and any change reruns that stage and everything after it. Results live in the run folder
  (`<run>/.cache/results`): deleting the run folder forgets them.
- Stage folders: training resumes from its checkpoints only when they were written under the same cache key; a
  folder left by other settings is moved aside to `<name>.previous` first.
- Memory: each heavy stage ends by collecting garbage and emptying the CUDA cache.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlcore.data.mode_config import MODE_CONFIG_NAME
from mlcore.errors import MlcoreError

RESULTS_FOLDER = Path(".cache") / "results"
STAGE_MARKER = ".pipeline-stage.json"
TRANSIENT = (OSError, RuntimeError, MemoryError)
NOT_TRANSIENT = (MlcoreError, TimeoutError, FileNotFoundError, PermissionError, NotImplementedError)


def is_transient(error: BaseException | None) -> bool:
    """True for failures worth another try: I/O and network (OSError), CUDA / runtime errors, out of memory."""
    return isinstance(error, TRANSIENT) and not isinstance(error, NOT_TRANSIENT)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: a raised exception arrives as the state's data; a returned Failed state (the
    tasks' way of reporting a user error) carries none, and is final."""
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


# --- cache keys -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def code_version() -> str:
    """mlcore's version and a hash of the package's files: any code change invalidates every cached stage."""
    import mlcore

    root = Path(mlcore.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    try:
        version = metadata.version("mlcore")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"{version}+{digest.hexdigest()[:12]}"


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str | None:
    """The content hash of a file (None for a folder or a missing path); memoised on size and mtime."""
    path = Path(path)
    if not path.is_file():
        return None
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _plain(value: Any) -> Any:
    """JSON-able form of a parameter: records as their fields, paths as strings."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def stage_key(stage: str, parameters: Mapping[str, Any], files: Iterable[str] = ()) -> str:
    """The cache key of one stage run; `files` names the parameters holding input files hashed by content."""
    hashed = {}
    for name in files:
        value = parameters.get(name)
        paths = value if isinstance(value, (list, tuple)) else [value]
        hashed[name] = [file_sha256(path) if path is not None else None for path in paths]
        hashed[f"{name}:images"] = [images_fingerprint_beside(path) for path in paths if path is not None]
    payload = {"stage": stage, "code": code_version(), "parameters": _plain(dict(parameters)), "files": hashed}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{stage}-{digest[:40]}"


def images_fingerprint_beside(path: str | Path) -> str | None:
    """The images' fingerprint validate recorded beside a prepared COCO file (in its folder's .mode_config.json):
    a replaced image reruns the stages even though the annotation file is the same."""
    config = Path(path).parent / MODE_CONFIG_NAME
    if Path(path).suffix != ".json" or not config.is_file():
        return None
    return json.loads(config.read_text()).get("images_fingerprint")


def stage_cache_key(*files: str, extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                    ) -> Callable[[Any, dict[str, Any]], str]:
    """A Prefect cache_key_fn for a stage whose parameters `files` name input files (hashed by content); `extra`
    adds inputs found from the parameters that are not parameters themselves (e.g. the teachers' base weights)."""

    def key(context: Any, parameters: dict[str, Any]) -> str:
        if extra is not None:
            parameters = {**parameters, **extra(parameters)}
        return stage_key(context.task.name, parameters, files)

    key.__name__ = f"stage_cache_key{files}"
    return key


def results_storage(run_dir: str | Path) -> Path:
    """Where cached stage results of this run folder are kept (Prefect takes a Path as local file storage)."""
    return Path(run_dir).resolve() / RESULTS_FOLDER


def current_stage_key() -> str | None:
    """The running task's cache key (None outside a Prefect task run, e.g. when called through `.fn`)."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None or context.task.cache_key_fn is None:
        return None
    return context.task.cache_key_fn(context, context.parameters)


def prepare_stage_dir(output: str | Path, key: str | None) -> bool:
    """Make OUTPUT ready for a stage run with cache key KEY; True when its checkpoints may be resumed.

    Same key as the folder's marker: an interrupted run of the same stage, resume. A folder from other settings (or
    with no marker) is moved to `<name>.previous` (replacing an older one), so no stale checkpoint is picked up.
    """
    output = Path(output)
    marker = output / STAGE_MARKER
    if key is None:
        return False
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return True
    if output.exists() and any(output.iterdir()):
        previous = output.with_name(output.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        output.rename(previous)
    output.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"key": key, "code": code_version()}))
    return False


# --- memory -----------------------------------------------------------------------------------------------------

def release_accelerator_memory() -> None:
    """Free what a finished stage left on the GPU, so the next stage starts with the whole device."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


__all__ = ["NOT_TRANSIENT", "TRANSIENT", "code_version", "current_stage_key", "file_sha256", "is_transient",
           "prepare_stage_dir", "release_accelerator_memory", "results_storage", "retry_transient",
           "stage_cache_key", "stage_key"]
