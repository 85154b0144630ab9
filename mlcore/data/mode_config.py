"""`.mode_config.json`: what the rest of the pipeline needs to know about a dataset, in one typed record."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from mlcore.data.mode import AnnotationMode, ModeEvidence
from mlcore.data.stats import DatasetStatistics
from mlcore.io import write_json_atomic

MODE_CONFIG_NAME = ".mode_config.json"

DISTILLATION_LOSSES: dict[str, list[str]] = {
    "detection_only": ["detection_loss", "logit_distillation_loss", "feature_distillation_loss"],
    "segmentation_only": ["segmentation_loss", "feature_distillation_loss"],
    "detection_and_segmentation": ["detection_loss", "segmentation_loss", "logit_distillation_loss",
                                   "feature_distillation_loss"],
}


class DistillationSettings(BaseModel):
    template: str = Field(description="The kd_* template that matches the mode.")
    losses: list[str] = Field(description="Loss components the mode supports.")


class ModeConfig(BaseModel):
    annotation_mode: AnnotationMode
    num_classes: int
    class_mapping: dict[str, str] = Field(description="Contiguous class index ('0'..'N-1') -> class name.")
    category_ids: dict[str, int] = Field(description="Class index -> the COCO category id it stands for.")
    recommended_teachers: list[str]
    recommended_student: str
    distillation_config: DistillationSettings
    dataset: str = Field(description="The cleaned annotation file (all images) the next stages read.")
    dataset_sha256: str = Field(description="sha256 of the cleaned file: what cache keys and lineage refer to.")
    source_dataset: str = Field(description="The user's annotation file it was made from.")
    source_sha256: str = Field(description="sha256 of the user's file.")
    images_root: str
    images_fingerprint: str | None = Field(
        None, description="sha256 of the images' names, sizes and mtimes: a replaced image changes it (and so the "
                          "pipeline's cache keys) even when the annotation file stays the same.")
    mode_evidence: ModeEvidence
    statistics: DatasetStatistics

    def write(self, folder: Path) -> Path:
        path = folder / MODE_CONFIG_NAME
        write_json_atomic(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def read(cls, path: Path) -> ModeConfig:
        if path.is_dir():
            path = path / MODE_CONFIG_NAME
        return cls.model_validate_json(path.read_bytes())

    @property
    def class_of_category(self) -> dict[int, int]:
        """COCO category id -> contiguous class index (the inverse of category_ids)."""
        return {int(category): int(index) for index, category in self.category_ids.items()}

    @property
    def class_names(self) -> list[str]:
        return [self.class_mapping[str(index)] for index in range(self.num_classes)]
