"""Write a pretrained demo teacher as a Hugging Face folder, the way the download script writes real checkpoints.

config.json, model.safetensors (fp16 to keep the repository small; config.json says float32, so it loads as fp32),
tokenizer files (Grounding DINO), preprocessor_config.json, SOURCE.json (command, seed, recipe, code version,
measured metrics) and SHA256SUMS. The folder is built beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import GroundingDinoImageProcessor, SamImageProcessor

from mlcore.io import sha256_file, write_json_atomic, write_text_atomic
from mlcore.pretrain.runner import PretrainSpec
from mlcore.teachers.weights import SOURCE_FILE

SUMS_FILE = "SHA256SUMS"
SOURCE_REPO = "mlcore pretrain-teachers"  # what SOURCE.json's "repo" says: made here, not downloaded


def save_teacher_folder(model: torch.nn.Module, tokenizer: Any, family: str, folder: Path, *, spec: PretrainSpec,
                        history: list[dict[str, Any]], preprocessing: dict[str, Any], command: str) -> Path:
    """Write the folder (replacing an older one); return its path."""
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
    write_json_atomic(staging / SOURCE_FILE, {
        "repo": SOURCE_REPO, "revision": code_version(), "command": command, "seed": spec.seed,
        "recipe": asdict(spec), "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": weights_sha256, "metrics": history[-1] if history else {}, "history": history})
    sums = "".join(f"{sha256_file(path)}  {path.name}\n" for path in sorted(staging.iterdir()) if path.is_file())
    write_text_atomic(staging / SUMS_FILE, sums)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder


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
