"""The teachers' input sizes from their configs: Grounding DINO's resize edges, SAM's fixed square side."""

from __future__ import annotations

from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig, TeacherSamLoraConfig
from mlcore.errors import ConfigError
from mlcore.preprocess import SingleModelPreprocessor, for_model
from mlcore.teachers.types import Teacher


def dino_preprocessor(teacher: Teacher, config: TeacherGroundingDinoLoraConfig) -> SingleModelPreprocessor:
    """The preset's Grounding DINO input pipeline with the config's training.shortest_edge / longest_edge."""
    sizes = teacher.preprocessor().config
    shortest = config.training.shortest_edge or sizes.shortest_edge
    longest = config.training.longest_edge or sizes.longest_edge
    if shortest is not None and shortest > longest:
        raise ConfigError(f"shortest_edge {shortest} exceeds longest_edge {longest} (one of them from the "
                          f"{teacher.preset.name} preset)", where="teacher_grounding_dino_lora.training",
                          fix="set both training.shortest_edge and training.longest_edge, shortest <= longest")
    return for_model("grounding_dino", {"grounding_dino": {**teacher.preprocessing(), "shortest_edge": shortest,
                                                           "longest_edge": longest}})


def check_sam_image_size(teacher: Teacher, config: TeacherSamLoraConfig) -> None:
    """SAM's position embeddings fix its input size: a config asking for another one is an error, not a resize."""
    wanted, own = config.training.image_size, int(teacher.preprocessor().config.longest_edge)
    if wanted is not None and wanted != own:
        raise ConfigError(f"training.image_size is {wanted}, but the {teacher.preset.name} model takes {own} x {own} "
                          "inputs (its position embeddings are fixed to that size)",
                          where="teacher_sam_lora.training.image_size", fix=f"set it to {own}, or to null")
