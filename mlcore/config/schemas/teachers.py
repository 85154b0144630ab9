"""Teacher fine-tuning configs: Grounding DINO (text-prompted boxes) and SAM (box-prompted masks), both with LoRA.

Target-module defaults are anchored regexes over the real transformers 5.x module names (see ENGINEERING.md): a bare
`q_proj` list would silently adapt the Swin backbone of Grounding DINO instead of its decoder.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlcore.config.schemas.common import (
    MIXED_PRECISION_HELP,
    ConfigModel,
    DatasetSection,
    MixedPrecision,
    OptionalPath,
    models_dir_from_env,
)

GROUNDING_DINO_LORA_TARGETS = r".*decoder\.layers\.\d+\.(self_attn|encoder_attn_text)\.(query|key|value|out_proj)"
SAM_LORA_TARGETS = (
    r".*mask_decoder\.transformer\.(layers\.\d+\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
    r"|final_attn_token_to_image)\.(q_proj|k_proj|v_proj|out_proj)"
)
SAM_ENCODER_LORA_TARGETS = r".*vision_encoder\.layers\.\d+\.attn\.qkv"  # the ViT's fused attention projections

_R_HELP = "LoRA rank: size of the low-rank update. 4-64; higher adapts more and trains more parameters."
_ALPHA_HELP = "LoRA scaling numerator (update is scaled by alpha / r); usually 2 x r."
_DROPOUT_HELP = "Dropout on the LoRA branch input, 0-0.5; regularises small datasets."
_TARGETS_HELP = (
    "Modules that get LoRA adapters: a regex matched (PEFT full match) against module names, or a list of name "
    "suffixes. Keep it anchored to the intended block: suffix lists such as q_proj also match backbone layers."
)
WEIGHTS_DIR_HELP = (
    "The models folder holding <preset folder>/ (or that Hugging Face folder itself) with the pretrained weights. "
    "None / empty: $MLCORE_MODELS_DIR, else models/ at the project root (where download_pretrained_models.sh "
    "writes). Ignored by `tiny` (seeded random weights)."
)


class LoraSettings(ConfigModel):
    """PEFT LoRA knobs; teacher configs subclass it to change the defaults."""

    r: int = Field(default=16, gt=0, le=512, description=_R_HELP)
    alpha: float = Field(default=32, gt=0, description=_ALPHA_HELP)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description=_DROPOUT_HELP)
    target_modules: str | list[str] = Field(default=GROUNDING_DINO_LORA_TARGETS, description=_TARGETS_HELP)
    bias: Literal["none", "all", "lora_only"] = Field(
        default="none", description="Which biases train: none (recommended; adapters stay detachable), all, lora_only."
    )
    max_trainable_fraction: float = Field(
        default=0.02,
        gt=0.0,
        le=1.0,
        description="Safety check: fail if LoRA makes more than this fraction of all parameters trainable "
        "(a too-broad target_modules pattern).",
    )

    @field_validator("target_modules")
    @classmethod
    def _targets_usable(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"target_modules is not a valid regex: {exc}") from exc
        elif not value:
            raise ValueError("target_modules is empty: name at least one module")
        return value


class GroundingDinoLora(LoraSettings):
    """Defaults for Grounding DINO: decoder self- and text cross-attention only."""


class SamLora(LoraSettings):
    """Defaults for SAM: mask-decoder attention only (28 small Linear layers)."""

    r: int = Field(default=8, gt=0, le=512, description=_R_HELP)
    alpha: float = Field(default=16, gt=0, description=_ALPHA_HELP)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description=_DROPOUT_HELP)
    target_modules: str | list[str] = Field(default=SAM_LORA_TARGETS, description=_TARGETS_HELP)
    image_encoder: bool = Field(
        default=False,
        description="Also adapt the image encoder (LoRA on its attention qkv): for images unlike SAM's own (textures, "
        "sensors), where the decoder alone cannot see better. The encoder then runs every step and no embedding is "
        "cached: ViT-B on CPU ~15 s per image per epoch.",
    )


class GroundingDinoModel(ConfigModel):
    preset: Literal["tiny", "shapes", "grounding_dino_swint", "grounding_dino_swinb"] = Field(
        default="grounding_dino_swint",
        description="Architecture: grounding_dino_swint (Swin-T + BERT-base, 172 M params), grounding_dino_swinb "
        "(Swin-B + BERT-base, 232 M), shapes (1.8 M, pretrained on generated shapes, ships with mlcore: the demo) "
        "or tiny (~1 M, random weights, for tests and CPU smoke runs).",
    )
    weights_dir: OptionalPath = Field(default_factory=models_dir_from_env, description=WEIGHTS_DIR_HELP)


class GroundingDinoTraining(ConfigModel):
    epochs: int = Field(default=20, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=4, ge=1, description="Images per step; 4 is meant to fit Swin-T at 800x1333 in 24 GB "
                            "(unverified until benchmarks/gpu_teachers.py runs on a GPU).")
    lr: float = Field(default=1e-4, gt=0.0, description="AdamW learning rate for the LoRA weights.")
    weight_decay: float = Field(default=1e-4, ge=0.0, description="AdamW weight decay.")
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float | None = Field(
        default=0.1, gt=0.0, description="Gradient clipping norm (Grounding DINO's own recipe uses 0.1); null: off."
    )
    mixed_precision: MixedPrecision = Field(default="auto", description=MIXED_PRECISION_HELP)
    auxiliary_loss: bool = Field(
        default=True, description="Supervise every decoder layer, not only the last (IDEA's fine-tuning recipe, "
        "Open-GroundingDino). The released checkpoints' config.json says false; this overrides it for training.")
    shortest_edge: int | None = Field(
        default=None, ge=128, description="Resize so the short side is this (pixels), in training and validation. "
        "null: the preset's (800 for grounding_dino_swint, 160 for tiny).")
    longest_edge: int | None = Field(
        default=None, ge=128, description="...unless the long side would exceed this. null: the preset's (1333 for "
        "grounding_dino_swint, 256 for tiny).")

    @model_validator(mode="after")
    def _edges_ordered(self) -> GroundingDinoTraining:
        if self.shortest_edge is not None and self.longest_edge is not None and self.shortest_edge > self.longest_edge:
            raise ValueError("shortest_edge must not exceed longest_edge")
        return self


class GroundingDinoInference(ConfigModel):
    box_threshold: float = Field(
        default=0.35, ge=0.0, le=1.0, description="Keep a box when its best phrase score reaches this."
    )
    text_threshold: float = Field(
        default=0.25, ge=0.0, le=1.0, description="Token score needed for a phrase to label the box."
    )


# Common COCO class names: prompts the user's data never trains, to see whether fine-tuning changed how the model
# answers them (the user's own class names are dropped from this list at run time).
DEFAULT_CONTROL_PROMPTS = ["person", "car", "dog", "cat", "chair", "bottle", "bicycle", "bird"]


class GroundingDinoForgetting(ConfigModel):
    """How metrics.json measures what fine-tuning cost on concepts the user did not train."""

    control_prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONTROL_PROMPTS),
        description="Generic class names prompted on the val images by the base and the adapted model; the base "
        "model's detections are the reference, the adapted model's are scored against them (COCO mAP50; 1.0: "
        "unchanged). Names that are also the user's classes are skipped. Empty list: off.",
    )
    max_images: int = Field(
        default=25, ge=1, description="Val images the control prompts run on (the first ones): bounds the cost."
    )
    score_threshold: float = Field(
        default=0.3, ge=0.0, le=1.0, description="The base model's detections at or above this score are the reference."
    )


class FrozenFeatureCacheBudget(ConfigModel):
    """How much disk the frozen-stage cache may take (cache_frozen_features)."""

    max_gb: float | None = Field(
        default=50.0, gt=0.0, description="Disk budget in GB (10^9 bytes). The size is estimated and logged before "
        "filling (~11-19 MB per 800x1333 image and prompt chunk in float16: 110-190 GB for 10k images); past the "
        "budget the first images are cached and the rest recomputed at every step (same results, slower). "
        "null: no limit.",
    )


class TeacherGroundingDinoLoraConfig(ConfigModel):
    """Fine-tune Grounding DINO with LoRA on the dataset's boxes, prompted by class names (or synonyms)."""

    kind: Literal["teacher_grounding_dino_lora"] = Field(
        default="teacher_grounding_dino_lora", description="Config type; selects this schema."
    )
    model: GroundingDinoModel = Field(default_factory=GroundingDinoModel, description="Which weights to adapt.")
    data: DatasetSection = Field(default_factory=DatasetSection, description="The COCO dataset to train on.")
    lora: GroundingDinoLora = Field(default_factory=GroundingDinoLora, description="LoRA adapter settings.")
    training: GroundingDinoTraining = Field(default_factory=GroundingDinoTraining, description="Optimisation.")
    inference: GroundingDinoInference = Field(
        default_factory=GroundingDinoInference, description="Thresholds when the teacher labels images."
    )
    class_prompts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Optional synonyms: class name -> prompt phrases. Classes not listed are prompted by name.",
    )
    cache_frozen_features: bool = Field(
        default=True,
        description="Run the frozen stages (Swin backbone, text encoder, fusion encoder) once per image and prompt "
        "and train the decoder's LoRA from the stored outputs (on disk under <output>/cache/). Used only while LoRA "
        "stays inside the decoder; a wider target_modules pattern turns it off (logged).",
    )
    frozen_features_dtype: Literal["float16", "float32"] = Field(
        default="float16",
        description="Storage of the cached features: float16 halves the disk (~11 MB per 800x1333 image and prompt) "
        "and rounds them at ~1e-3 relative; float32 replays them bit for bit.",
    )
    cache: FrozenFeatureCacheBudget = Field(
        default_factory=FrozenFeatureCacheBudget, description="Disk budget of the frozen-stage cache."
    )
    forgetting: GroundingDinoForgetting = Field(
        default_factory=GroundingDinoForgetting, description="The forgetting check written to metrics.json."
    )

    @model_validator(mode="after")
    def _prompts_name_known_classes(self) -> TeacherGroundingDinoLoraConfig:
        for name, phrases in self.class_prompts.items():
            if not phrases or any(not phrase.strip() for phrase in phrases):
                raise ValueError(f"class_prompts[{name!r}] needs at least one non-empty phrase")
        names = self.data.class_names
        unknown = sorted(set(self.class_prompts) - set(names or []))
        if names is not None and unknown:
            raise ValueError(
                f"class_prompts names classes not in data.class_names: {', '.join(unknown)} "
                f"(valid: {', '.join(names)})"
            )
        return self


class SamModel(ConfigModel):
    preset: Literal["tiny", "shapes", "sam_vit_b", "sam_vit_l", "sam_vit_h"] = Field(
        default="sam_vit_b",
        description="Architecture: sam_vit_b (94 M), sam_vit_l (312 M), sam_vit_h (641 M), shapes (0.5 M, "
        "pretrained on generated shapes, ships with mlcore: the demo) or tiny (tests).",
    )
    weights_dir: OptionalPath = Field(default_factory=models_dir_from_env, description=WEIGHTS_DIR_HELP)


class SamFreeze(ConfigModel):
    image_encoder: bool = Field(
        default=True, description="Keep the ViT image encoder frozen (required to cache its embeddings)."
    )
    prompt_encoder: bool = Field(default=True, description="Keep the box/point prompt encoder frozen.")


class SamLossWeights(ConfigModel):
    bce: float = Field(default=1.0, ge=0.0, description="Weight of per-pixel binary cross-entropy on mask logits.")
    dice: float = Field(default=1.0, ge=0.0, description="Weight of the dice (overlap) loss.")
    iou: float = Field(default=1.0, ge=0.0, description="Weight of the MSE between predicted and true mask IoU.")

    @model_validator(mode="after")
    def _something_to_learn(self) -> SamLossWeights:
        if self.bce + self.dice + self.iou == 0:
            raise ValueError("all loss weights are 0: nothing would train")
        return self


class SamTraining(ConfigModel):
    epochs: int = Field(default=10, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=8, ge=1, description="Images per step (cheap with cached embeddings).")
    lr: float = Field(default=1e-4, gt=0.0, description="AdamW learning rate for the LoRA weights.")
    weight_decay: float = Field(default=1e-4, ge=0.0, description="AdamW weight decay.")
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float | None = Field(default=1.0, gt=0.0, description="Gradient clipping norm; null: off.")
    mixed_precision: MixedPrecision = Field(default="auto", description=MIXED_PRECISION_HELP)
    image_size: int | None = Field(
        default=None, ge=64, description="Long side after resizing, padded to a square. Must equal the model's own "
        "input size (its position embeddings are fixed): 1024 for the sam_vit_* presets, 256 for tiny. null: the "
        "model's.",
    )


class TeacherSamLoraConfig(ConfigModel):
    """Fine-tune SAM's mask decoder with LoRA, prompted by (jittered) ground-truth boxes."""

    kind: Literal["teacher_sam_lora"] = Field(default="teacher_sam_lora", description="Config type.")
    model: SamModel = Field(default_factory=SamModel, description="Which weights to adapt.")
    data: DatasetSection = Field(default_factory=DatasetSection, description="The COCO dataset (needs masks).")
    lora: SamLora = Field(default_factory=SamLora, description="LoRA adapter settings.")
    freeze: SamFreeze = Field(default_factory=SamFreeze, description="Which encoders stay frozen.")
    cache_image_embeddings: bool = Field(
        default=True,
        description="Compute each image's embedding once and reuse it every epoch: the biggest speed-up "
        "(ViT-B on CPU: the encoder costs ~15 s per image, 5.5x a decoder step; benchmarks/results/teachers_cpu.json). "
        "Needs freeze.image_encoder.",
    )
    loss: SamLossWeights = Field(default_factory=SamLossWeights, description="Mask loss weights.")
    box_jitter_fraction: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="Randomly move each prompt box edge by up to this fraction of its size, so the teacher "
        "tolerates the imprecise boxes a detector will give it.",
    )
    training: SamTraining = Field(default_factory=SamTraining, description="Optimisation.")

    @model_validator(mode="after")
    def _cache_needs_frozen_encoder(self) -> TeacherSamLoraConfig:
        if self.cache_image_embeddings and not self.freeze.image_encoder:
            raise ValueError(
                "cache_image_embeddings needs freeze.image_encoder: true (a training encoder changes its embeddings)"
            )
        return self
