"""Write a pretrained demo teacher as a Hugging Face folder, the way the download script writes real checkpoints.

config.json, model.safetensors (fp16 to keep the repository small; config.json says float32, so it loads as fp32),
tokenizer files (Grounding DINO), preprocessor_config.json, SOURCE.json (command, seed, recipe of each stage, code
version, measured metrics) and SHA256SUMS. The folder is built beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
from transformers import GroundingDinoImageProcessor, SamImageProcessor

from mlcore.io import sha256_file, write_json_atomic, write_text_atomic
from mlcore.teachers.weights import HASHES_FILE, SOURCE_FILE

SUMS_FILE = "SHA256SUMS"
SOURCE_REPO = "mlcore pretrain-teachers"  # what SOURCE.json's "repo" says: made here, not downloaded


def save_teacher_folder(model: torch.nn.Module, tokenizer: Any, family: str, folder: Path, *,
                        stages: list[dict[str, Any]], preprocessing: dict[str, Any], command: str) -> Path:
    """Write the folder (replacing an older one); return its path.

    `stages`: every training stage that made these weights, first to last, each {"recipe", "history"} (and the
    "weights_sha256" it ended with, for all but this one); SOURCE.json's recipe, metrics and history are the last's.
    """
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    half = _fp16_copy(model)
    half.save_pretrained(staging)
    config_path = staging / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["dtype"] = "float32"  # stored in fp16, computed in fp32
    write_json_atomic(config_path, config)
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
    _processor(family, preprocessing).save_pretrained(staging)
    weights_sha256 = sha256_file(staging / "model.safetensors")
    stages = [*stages[:-1], {**stages[-1], "weights_sha256": weights_sha256}]
    last = stages[-1]
    write_json_atomic(staging / SOURCE_FILE, {
        "repo": SOURCE_REPO, "revision": code_version(), "command": command, "seed": last["recipe"]["seed"],
        "recipe": last["recipe"], "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": weights_sha256, "metrics": last["history"][-1] if last["history"] else {},
        "history": last["history"], "stages": stages})
    sums = "".join(f"{sha256_file(path)}  {path.name}\n" for path in sorted(staging.iterdir()) if path.is_file())
    write_text_atomic(staging / SUMS_FILE, sums)
    _replace(staging, folder)
    return folder


def copy_teacher_folder(source: Path, folder: Path) -> Path:
    """Put a finished teacher folder in place (a models folder, or the shipped copy), replacing an older one whole."""
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(HASHES_FILE))  # a loader's cache of this copy
    _replace(staging, folder)
    return folder


def _replace(staging: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def _fp16_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(torch.float16)


def _processor(family: str, preprocessing: dict[str, Any]):
    if family == "grounding_dino":
        return GroundingDinoImageProcessor(size={"shortest_edge": preprocessing["shortest_edge"],
                                                 "longest_edge": preprocessing["longest_edge"]})
    side = int(preprocessing["longest_edge"])
    return SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side})


def code_version() -> str:
    """The git commit the code ran at (with '+dirty' for uncommitted changes), or 'unknown' outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
