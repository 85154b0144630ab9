"""LoRA adapters on disk: PEFT's own files plus `mlcore_adapter.json`, so an adapter alone can rebuild its teacher.

    <adapter_dir>/adapter_model.safetensors   the LoRA weights only (PEFT)
    <adapter_dir>/adapter_config.json         PEFT's LoraConfig
    <adapter_dir>/mlcore_adapter.json         family, preset, base weights, class mapping, prompts, sha256 of weights

`PeftModel.from_pretrained(base, adapter_dir)` loads it like any PEFT adapter; `load_adapter(adapter_dir)` also
rebuilds the base model from the metadata, refuses adapter weights whose checksum changed, and refuses a base other
than the one the adapter was trained on (`base_weights`: repository, revision, weights sha256). Grounding DINO's
Swin-T and Swin-B models have the same decoder, so an adapter would otherwise load onto the wrong one without a word.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors import safe_open

from mlcore.errors import ModelError
from mlcore.io import sha256_file, write_json_atomic
from mlcore.teachers.adapter_metadata import (ADAPTER_WEIGHTS, METADATA_NAME, AdapterMetadata,
                                              read_adapter_metadata)
from mlcore.logs import get_logger
from mlcore.teachers.grounding_dino import load_grounding_dino
from mlcore.teachers.lora import LoraReport, merge_lora_weights
from mlcore.teachers.presets import get_preset
from mlcore.teachers.sam import load_sam
from mlcore.teachers.types import Teacher
from mlcore.teachers.weights import DOWNLOAD_SCRIPT, MODELS_DIR_ENV, BaseWeights, revision_variable

log = get_logger(__name__)


def save_adapter(teacher: Teacher, adapter_dir: str | os.PathLike[str], *,
                 class_mapping: Mapping[str, str] | Sequence[str], class_prompts: Mapping[str, Sequence[str]] | None
                 = None, inference: Mapping[str, float] | None = None, report: LoraReport | None = None
                 ) -> AdapterMetadata:
    """Write the adapter weights (safetensors), PEFT's config and mlcore_adapter.json with their sha256."""
    if not isinstance(teacher.model, PeftModel):
        raise ModelError("this teacher has no LoRA adapter to save (merged, or LoRA never applied)",
                         fix="save before merge_lora_weights; apply LoRA with apply_lora_to_grounding_dino/_sam")
    folder = Path(adapter_dir)
    teacher.model.save_pretrained(folder, safe_serialization=True)
    peft_config = teacher.model.peft_config["default"]
    targets = peft_config.target_modules
    metadata = AdapterMetadata(
        family=teacher.family, preset=teacher.preset.name,
        base_model="random_init" if teacher.random_init else str(teacher.preset.folder),
        hub_repository=None if teacher.random_init else teacher.preset.hub_repository,
        random_init=teacher.random_init, base_weights_path=None if teacher.random_init else teacher.weights,
        base_weights=teacher.base_weights,
        class_mapping=_as_mapping(class_mapping),
        class_prompts={name: list(phrases) for name, phrases in (class_prompts or {}).items()},
        inference=dict(inference or {}),
        lora={"r": peft_config.r, "alpha": peft_config.lora_alpha, "dropout": peft_config.lora_dropout,
              "target_modules": targets if isinstance(targets, str) else sorted(targets), "bias": peft_config.bias},
        lora_report=report.to_dict() if report else None,
        adapter_sha256=sha256_file(folder / ADAPTER_WEIGHTS),
    )
    write_json_atomic(folder / METADATA_NAME, metadata.model_dump(mode="json"))
    return metadata


def verify_adapter_checksum(adapter_dir: str | os.PathLike[str], metadata: AdapterMetadata | None = None) -> None:
    """The weights file must be the one that was saved: a changed or truncated file is a ModelError."""
    metadata = metadata or read_adapter_metadata(adapter_dir)
    weights = Path(adapter_dir) / metadata.adapter_file
    if not weights.is_file():
        raise ModelError("adapter weights are missing", where=str(weights),
                         fix="copy the whole adapter folder, or retrain the teacher")
    actual = sha256_file(weights)
    if actual != metadata.adapter_sha256:
        raise ModelError(f"adapter weights do not match their checksum (sha256 {actual[:12]}..., recorded "
                         f"{metadata.adapter_sha256[:12]}...): the file changed after it was saved",
                         where=str(weights), fix="restore the adapter folder from the training output, or retrain")


def load_adapter(adapter_dir: str | os.PathLike[str], *, weights_dir: str | os.PathLike[str] | None = None,
                 device: str | torch.device | None = None, merge: bool = False, is_trainable: bool = False
                 ) -> Teacher:
    """Rebuild the base model the metadata names, attach the adapter (checksum verified first); merge=True folds
    it into the base for inference, is_trainable=True to continue training it.

    Base weights: weights_dir, else $MLCORE_MODELS_DIR, else the folder recorded when the adapter was saved (when
    it still exists), else models/ at the project root. A base whose weights differ from the recorded ones (another
    sha256, or another random-init seed or preset) is a ModelError naming both.
    """
    folder = Path(adapter_dir)
    metadata = read_adapter_metadata(folder)
    verify_adapter_checksum(folder, metadata)
    recorded_folder = Path(metadata.base_weights_path) if metadata.base_weights_path else None
    if weights_dir is None and not os.environ.get(MODELS_DIR_ENV) and recorded_folder and recorded_folder.is_dir():
        weights_dir = recorded_folder
    load_base = load_grounding_dino if metadata.family == "grounding_dino" else load_sam
    teacher = load_base(metadata.preset, weights_dir, random_init=metadata.random_init)
    check_same_base(metadata, teacher, folder)
    try:
        model = PeftModel.from_pretrained(teacher.model, folder, is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(f"the adapter does not fit the {metadata.family} base model "
                         f"({str(exc).strip().splitlines()[0]})", where=str(folder),
                         fix="load it on the base it was trained on (same preset and weights)") from None
    _check_all_weights_loaded(model, folder / metadata.adapter_file)
    teacher.model = merge_lora_weights(model) if merge else model
    teacher.adapter = metadata
    if device is not None:
        teacher.model.to(device)
    return teacher


def check_same_base(metadata: AdapterMetadata, teacher: Teacher, adapter_dir: Path) -> None:
    """The base just loaded must hold the weights the adapter was trained on (compared by sha256, or by preset and
    seed for random weights). Another revision with the same weights is fine (a config-only commit)."""
    recorded, actual = metadata.base_weights, teacher.base_weights
    if recorded is None:
        log.warning("%s was saved without its base weights' identity (format %d): cannot check that %s is its base",
                    adapter_dir, metadata.format_version, actual.describe())
        return
    if recorded.identity == actual.identity:
        if recorded.revision and actual.revision and recorded.revision != actual.revision:
            log.info("%s: base weights identical, revision %s instead of %s", adapter_dir, actual.revision,
                     recorded.revision)
        return
    raise ModelError(f"this adapter was trained on {recorded.describe()}, but the base loaded now is "
                     f"{actual.describe()}", where=str(adapter_dir), fix=_base_fix(metadata.family, recorded))


def _base_fix(family: str, recorded: BaseWeights) -> str:
    if recorded.random_init:
        return (f"load it on preset {recorded.preset!r} with random_init (seed {recorded.random_seed}), or retrain "
                "the adapter on the base you have")
    preset = get_preset(family, recorded.preset)
    revision = recorded.revision or "<the revision it was trained on>"
    return (f"point model.weights_dir (or {MODELS_DIR_ENV}) at the folder holding "
            f"{recorded.repo or preset.hub_repository}@{revision} (download it with "
            f"`{revision_variable(preset)}={revision} {DOWNLOAD_SCRIPT} {preset.folder}`), or retrain the adapter on "
            "the base you have")


def _check_all_weights_loaded(model: PeftModel, weights: Path) -> None:
    """PEFT only warns when adapter keys find no module; a half-applied adapter must not pass silently."""
    with safe_open(str(weights), framework="pt") as handle:
        saved = set(handle.keys())
    expected = set(get_peft_model_state_dict(model))
    if saved != expected:
        missing = sorted(expected - saved)[:3]
        unused = sorted(saved - expected)[:3]
        raise ModelError(f"the adapter does not fit the base model: missing {missing}, unused {unused}",
                         where=str(weights.parent), fix="load it on the base it was trained on")


def _as_mapping(class_mapping: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(class_mapping, Mapping):
        return {str(key): str(value) for key, value in class_mapping.items()}
    return {str(index): str(name) for index, name in enumerate(class_mapping)}
