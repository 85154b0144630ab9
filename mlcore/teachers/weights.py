"""Where a preset's pretrained weights are, and how a model is built when there are none (seeded random weights).

Never a network call: folders are local, and every `from_pretrained` passes `local_files_only=True`. A missing folder
is a `ModelError` that names `scripts/download_pretrained_models.sh`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import torch

from mlcore.errors import ModelError
from mlcore.teachers.presets import TINY_SEED, TeacherPreset

MODELS_DIR_ENV = "MLCORE_MODELS_DIR"
DOWNLOAD_SCRIPT = "scripts/download_pretrained_models.sh"
# The model_type a folder's config.json must declare for each family (a SAM folder given for DINO fails early).
MODEL_TYPES = {"grounding_dino": "grounding-dino", "sam": "sam"}

T = TypeVar("T")


def models_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding the model folders: `weights_dir` when given, else $MLCORE_MODELS_DIR, else None."""
    if weights_dir not in (None, ""):
        return Path(weights_dir)
    value = os.environ.get(MODELS_DIR_ENV)
    return Path(value) if value else None


def resolve_weights_folder(preset: TeacherPreset, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face folder of a full-size preset.

    `weights_dir` (or $MLCORE_MODELS_DIR) is either the models dir holding `<preset folder>/` or that model folder
    itself (it has a config.json). Missing -> ModelError with the download command.
    """
    assert preset.folder is not None, f"preset {preset.name} has no pretrained weights"
    root = models_dir(weights_dir)
    fix = (f"run `{DOWNLOAD_SCRIPT} {preset.folder}` (it writes $MLCORE_MODELS_DIR/{preset.folder}/, "
           f"default models/{preset.folder}/), then set model.weights_dir or MLCORE_MODELS_DIR to that models "
           f"folder; offline: copy the folder from a machine with internet and check it with "
           f"`{DOWNLOAD_SCRIPT} --verify-only {preset.folder}`. For tests use preset `tiny`.")
    if root is None:
        raise ModelError(f"no weights folder for {preset.family} preset {preset.name!r}: neither model.weights_dir "
                         f"nor {MODELS_DIR_ENV} is set", fix=fix)
    candidates = [root, root / preset.folder] if (root / "config.json").is_file() else [root / preset.folder]
    for folder in candidates:
        if (folder / "config.json").is_file():
            check_model_type(folder, preset)
            return folder
    raise ModelError(f"pretrained weights for {preset.family} preset {preset.name!r} not found "
                     f"(expected {root / preset.folder}/config.json and its weights)", where=str(root), fix=fix)


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


def load_pretrained(folder: Path, preset: TeacherPreset, load: Callable[[Path], T]) -> T:
    """Run a `from_pretrained` call, turning its missing-file / corrupt-file errors into a ModelError."""
    try:
        return load(folder)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {preset.family} weights: {str(exc).strip().splitlines()[0]}",
                         where=str(folder),
                         fix=f"check the folder with `{DOWNLOAD_SCRIPT} --verify-only {preset.folder}`; "
                             f"download it again if that fails") from None


@contextlib.contextmanager
def seeded(seed: int = TINY_SEED) -> Iterator[None]:
    """Deterministic random init without touching the caller's RNG: the same tiny base model in every process.

    load_adapter relies on it: an adapter trained on a random-weight base only makes sense on that same base.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
