"""`mlcore_adapter.json`: what an adapter was trained on (family, preset, base weights, classes, prompts, checksum)."""

from __future__ import annotations

import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mlcore.errors import ModelError
from mlcore.teachers.weights import BaseWeights

METADATA_NAME = "mlcore_adapter.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FORMAT_VERSION = 2  # 2: base_weights (repository, revision, weights sha256) recorded and checked on load


class AdapterMetadata(BaseModel):
    """What `load_adapter` needs to rebuild base + adapter, and what a person needs to know what it is."""

    format_version: int = FORMAT_VERSION
    family: Literal["grounding_dino", "sam"]
    preset: str = Field(description="Teacher preset of the base model (tiny, grounding_dino_swint, sam_vit_b, ...).")
    base_model: str = Field(description="The base weights: the preset's folder name, or 'random_init'.")
    hub_repository: str | None = Field(default=None, description="Where the base weights come from.")
    random_init: bool = Field(description="Base built with seeded random weights (tiny, benchmarks).")
    base_weights_path: str | None = Field(default=None, description="Base weights folder when it was saved.")
    base_weights: BaseWeights | None = Field(
        default=None, description="Which base weights: repository, revision, weights sha256 (or the random-init "
        "seed). load_adapter refuses another base. None: saved by format 1, not checked.")
    class_mapping: dict[str, str] = Field(description="Class index -> class name the adapter was trained on.")
    class_prompts: dict[str, list[str]] = Field(default_factory=dict, description="Synonym phrases per class.")
    inference: dict[str, float] = Field(default_factory=dict, description="Grounding DINO thresholds.")
    lora: dict[str, Any] = Field(default_factory=dict, description="r, alpha, dropout, target_modules, bias.")
    lora_report: dict[str, Any] | None = Field(default=None, description="Trainable parameter counts.")
    adapter_file: str = ADAPTER_WEIGHTS
    adapter_sha256: str
    mlcore_version: str = Field(default_factory=lambda: mlcore_version(), description="mlcore that saved it.")

    @property
    def class_names(self) -> list[str]:
        return [self.class_mapping[str(index)] for index in range(len(self.class_mapping))]


def read_adapter_metadata(adapter_dir: str | os.PathLike[str]) -> AdapterMetadata:
    path = Path(adapter_dir) / METADATA_NAME
    if not path.is_file():
        raise ModelError(f"not an mlcore adapter folder: {METADATA_NAME} is missing", where=str(adapter_dir),
                         fix="point at the folder the teacher training wrote (it holds adapter_model.safetensors "
                             f"and {METADATA_NAME})")
    try:
        return AdapterMetadata.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ModelError(f"{METADATA_NAME} is invalid: {exc.errors()[0]['msg']}", where=str(path),
                         fix="retrain the teacher, or restore the file from the training output") from None


def mlcore_version() -> str:
    try:
        return importlib_metadata.version("mlcore")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"
