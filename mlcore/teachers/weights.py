"""Where a preset's pretrained weights are, which weights they are, and how a model is built without any.

Never a network call: folders are local, and every `from_pretrained` passes `local_files_only=True`. A missing folder
is a `ModelError` that names `scripts/download_pretrained_models.sh`.

The models folder is `model.weights_dir`, else $MLCORE_MODELS_DIR, else `models/` at the project root (the checkout
holding pyproject.toml): the download script writes to the same place by default.

A loaded base is identified by `BaseWeights`: the Hub repository and revision the download script recorded in the
folder's SOURCE.json, and the sha256 of its weight files. Hashing a 0.4-2.5 GB file on every load is slow, so digests
are kept in the folder's `.mlcore-weights.json` by (file, size, mtime): the download script writes it, the loader
rehashes only a file that changed (and records it again when the folder is writable).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from mlcore.errors import ModelError
from mlcore.io import sha256_file, write_json_atomic
from mlcore.logs import get_logger
from mlcore.preprocess.processor_config import PROCESSOR_CONFIG, read_processor_config
from mlcore.teachers.presets import TINY_SEED, TeacherPreset

log = get_logger(__name__)

MODELS_DIR_ENV = "MLCORE_MODELS_DIR"
DOWNLOAD_SCRIPT = "scripts/download_pretrained_models.sh"
SOURCE_FILE = "SOURCE.json"  # {"repo": ..., "revision": <Hub commit>}, written by the download script
HASHES_FILE = ".mlcore-weights.json"  # {"files": {name: {size, mtime_ns, sha256}}}: same format in the script
# The model_type a folder's config.json must declare for each family (a SAM folder given for DINO fails early).
MODEL_TYPES = {"grounding_dino": "grounding-dino", "sam": "sam"}

T = TypeVar("T")


def project_models_dir() -> Path | None:
    """`models/` at the project root (the checkout this package runs from), None for a copy installed elsewhere."""
    root = Path(__file__).resolve().parents[2]
    return root / "models" if (root / "pyproject.toml").is_file() else None


DEFAULT_MODELS_DIR = project_models_dir()
# Weights that ship inside the package (the demo teachers of `mlcore pretrain-teachers`).
BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[1] / "resources" / "teachers"


def models_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding the model folders: `weights_dir` when given, else $MLCORE_MODELS_DIR, else `models/` at
    the project root (None only for an installed copy outside a checkout)."""
    if weights_dir not in (None, ""):
        return Path(weights_dir)
    value = os.environ.get(MODELS_DIR_ENV)
    return Path(value) if value else DEFAULT_MODELS_DIR


def revision_variable(preset: TeacherPreset) -> str:
    """The environment variable that overrides the download script's pinned revision for this preset's folder."""
    return f"MLCORE_REVISION_{str(preset.folder).upper()}"


def resolve_weights_folder(preset: TeacherPreset, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face folder of a full-size preset.

    `weights_dir` (or $MLCORE_MODELS_DIR, or the project's models/) is either the models dir holding
    `<preset folder>/` or that model folder itself (it has a config.json); a bundled preset falls back to the copy
    shipped in mlcore/resources/teachers/. Missing -> ModelError with the download command.
    """
    assert preset.folder is not None, f"preset {preset.name} has no pretrained weights"
    root = models_dir(weights_dir)
    fix = (f"run `{DOWNLOAD_SCRIPT} {preset.folder}` (it writes $MLCORE_MODELS_DIR/{preset.folder}/, default "
           f"models/{preset.folder}/ at the project root), or set model.weights_dir or MLCORE_MODELS_DIR to the "
           f"models folder that holds it; offline: copy the folder from a machine with internet and check it with "
           f"`{DOWNLOAD_SCRIPT} --verify-only {preset.folder}`. For tests use preset `tiny`.")
    if preset.bundled:
        fix = (f"the {preset.name} weights ship with mlcore in {BUNDLED_MODELS_DIR / preset.folder}/: restore them "
               f"from the repository, or rebuild them with `mlcore pretrain-teachers`")
    if root is None and not preset.bundled:
        raise ModelError(f"no weights folder for {preset.family} preset {preset.name!r}: neither model.weights_dir "
                         f"nor {MODELS_DIR_ENV} is set, and mlcore does not run from a checkout with a models/ "
                         f"folder", fix=fix)
    candidates = []
    if root is not None:
        candidates = [root, root / preset.folder] if (root / "config.json").is_file() else [root / preset.folder]
    if preset.bundled:
        candidates.append(BUNDLED_MODELS_DIR / preset.folder)
    for folder in candidates:
        if (folder / "config.json").is_file():
            check_model_type(folder, preset)
            return folder
    raise ModelError(f"pretrained weights for {preset.family} preset {preset.name!r} not found "
                     f"(expected {candidates[0]}/config.json and its weights)", where=str(candidates[0].parent),
                     fix=fix)


def check_model_type(folder: Path, preset: TeacherPreset) -> None:
    """A folder of the wrong family (e.g. SAM weights where Grounding DINO is expected) fails with a clear message."""
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelError(f"config.json cannot be read: {exc}", where=str(folder),
                         fix=f"download the folder again with {DOWNLOAD_SCRIPT} {preset.folder}") from None
    expected = MODEL_TYPES[preset.family]
    if model_type != expected:
        raise ModelError(f"this folder holds a {model_type!r} model, not {expected!r} ({preset.family})",
                         where=str(folder), fix=f"point the {preset.family} teacher at its own folder "
                                                f"({preset.folder}/)")


# transformers builds a model on the meta device under process-wide init patches, then loads the weights: two
# threads loading at once (labelling shards in threads) get "Cannot copy out of meta tensor". One load at a time.
_LOAD_LOCK = threading.Lock()


def load_pretrained(folder: Path, preset: TeacherPreset, load: Callable[[Path], T]) -> T:
    """Run a `from_pretrained` call (one at a time in this process), turning its missing-file / corrupt-file errors
    into a ModelError."""
    try:
        with _LOAD_LOCK:
            return load(folder)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {preset.family} weights: {str(exc).strip().splitlines()[0]}",
                         where=str(folder),
                         fix=f"check the folder with `{DOWNLOAD_SCRIPT} --verify-only {preset.folder}`; "
                             f"download it again if that fails") from None


def checkpoint_preprocessing(folder: Path, preset: TeacherPreset) -> dict[str, Any]:
    """What the folder's preprocessor_config.json changes against the preset's inputs: used, and logged once per
    load (a derived checkpoint, e.g. a medical SAM, must not be fed the stock normalisation without a word)."""
    found = read_processor_config(folder, preset.preprocessor().config)
    if found is None:
        log.info("%s has no %s: using the %s preset's input settings", folder, PROCESSOR_CONFIG, preset.name)
        return {}
    if found.differences:
        log.warning("%s differs from the %s preset's inputs: %s; using the checkpoint's values", found.source,
                    preset.name, "; ".join(found.differences))
    for item in found.unsupported:
        log.warning("%s: %s", found.source, item)
    return found.values


@contextlib.contextmanager
def seeded(seed: int = TINY_SEED) -> Iterator[None]:
    """Deterministic random init without touching the caller's RNG: the same tiny base model in every process.

    load_adapter relies on it: an adapter trained on a random-weight base only makes sense on that same base.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- which weights -------------------------------------------------------------------------------------------------

class BaseWeights(BaseModel):
    """The base weights a teacher was built on: what an adapter records and every cache key includes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    preset: str = Field(description="Teacher preset (tiny, grounding_dino_swint, sam_vit_b, ...).")
    repo: str | None = Field(default=None, description="Hub repository the folder was downloaded from (SOURCE.json).")
    revision: str | None = Field(default=None, description="Hub commit of that download; None: not recorded.")
    weights_sha256: str | None = Field(default=None, description="sha256 of the weight file(s); None: random init.")
    random_seed: int | None = Field(default=None, description="Seed of the random init (random-weight bases only).")

    @property
    def random_init(self) -> bool:
        return self.weights_sha256 is None

    @property
    def identity(self) -> str:
        """What must match for an adapter to fit: the weights themselves (a revision alone can change the config)."""
        if self.random_init:
            return f"random_init:{self.preset}:{self.random_seed}"
        return f"sha256:{self.weights_sha256}"

    @property
    def cache_key(self) -> str:
        """The identity plus the revision it was downloaded at, for cache file names."""
        return self.identity if self.random_init else f"{self.identity}@{self.revision or 'unknown'}"

    def describe(self) -> str:
        if self.random_init:
            return f"seeded random weights of preset {self.preset!r} (seed {self.random_seed})"
        source = f"{self.repo or 'an unrecorded repository'}@{self.revision or 'unrecorded revision'}"
        return f"{source} (preset {self.preset!r}, weights sha256 {self.weights_sha256})"


def random_base(preset: TeacherPreset, seed: int = TINY_SEED) -> BaseWeights:
    return BaseWeights(preset=preset.name, random_seed=seed)


def read_base_weights(folder: Path, preset: TeacherPreset) -> BaseWeights:
    """The identity of a loaded weights folder: SOURCE.json's repository and revision, the weights' sha256."""
    source: dict = {}
    with contextlib.suppress(OSError, ValueError):
        source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    if not source:
        log.info("%s has no %s (not written by %s): its revision is unknown; it is identified by its weights' "
                 "sha256 alone", folder, SOURCE_FILE, DOWNLOAD_SCRIPT)
    return BaseWeights(preset=preset.name, repo=source.get("repo"), revision=source.get("revision"),
                       weights_sha256=weights_sha256(folder))


def weight_files(folder: Path) -> list[Path]:
    """The files holding the weights: safetensors (one or shards), else PyTorch pickles."""
    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("."))
    return files or sorted(folder.glob("pytorch_model*.bin"))


def weights_sha256(folder: Path) -> str:
    """sha256 of the weights: the file's own for a single file (what `sha256sum model.safetensors` prints), else
    the sha256 of the shards' `<sha256>  <name>` lines."""
    files = weight_files(folder)
    if not files:
        raise ModelError("no weights file (*.safetensors or pytorch_model*.bin) in the folder", where=str(folder),
                         fix=f"download it again with {DOWNLOAD_SCRIPT}")
    digests = _recorded_digests(folder, files)
    if len(files) == 1:
        return digests[files[0].name]
    lines = "".join(f"{digests[path.name]}  {path.name}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for this process


def _recorded_digests(folder: Path, files: list[Path]) -> dict[str, str]:
    """Each file's sha256: from this process's memo or the folder's record when size and mtime still match, else
    hashed now (and recorded, best effort: a read-only folder is hashed again by the next process)."""
    record_path = folder / HASHES_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        record = {}
    digests, changed = {}, False
    for path in files:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        entry = record.get(path.name) or {}
        if key in _DIGESTS:
            digest = _DIGESTS[key]
        elif entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns and entry.get("sha256"):
            digest = str(entry["sha256"])
        else:
            log.info("hashing %s (%.0f MB) to identify the base weights; recorded in %s", path,
                     stat.st_size / 1e6, HASHES_FILE)
            digest = sha256_file(path)
            record[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
            changed = True
        _DIGESTS[key] = digest
        digests[path.name] = digest
    if changed:
        with contextlib.suppress(OSError):
            write_json_atomic(record_path, {"files": record})
    return digests
