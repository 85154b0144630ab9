"""LoRA on the teachers (PEFT): attach adapters where the teacher config says, check the freeze, merge for inference.

Grounding DINO: the decoder's self- and text cross-attention projections (r=16, alpha=32, dropout=0.1); SAM: the
mask decoder's attention (r=8, alpha=16, dropout=0.05), image and prompt encoders frozen. The numbers and the
anchored target regexes are the defaults of `mlcore.config.schemas.teachers`; a config passes its `lora` section.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from mlcore.config.schemas.teachers import (SAM_ENCODER_LORA_TARGETS, GroundingDinoLora, LoraSettings, SamFreeze,
                                            SamLora)
from mlcore.errors import ConfigError, ModelError
from mlcore.teachers.grounding_dino import patch_grounding_dino_for_peft

# PEFT names: base_model.model.<module>.lora_A.default.weight; reports name the adapted module, <module>.
_PEFT_PREFIX = "base_model.model."
_LORA_PARTS = {"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}


@dataclass(frozen=True)
class LoraReport:
    """What LoRA made trainable; the caller logs it and saves it beside the adapter."""

    trainable: int
    total: int
    ratio: float
    max_trainable_fraction: float
    trainable_modules: tuple[str, ...]  # adapted (or fully trained) module names in the base model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lora_config(settings: LoraSettings, modules_to_save: list[str] | None = None) -> LoraConfig:
    """PEFT's LoraConfig from a teacher config's `lora` section."""
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules, bias=settings.bias,
                      modules_to_save=modules_to_save or None)


def apply_lora_to_grounding_dino(model: nn.Module, lora: LoraSettings | None = None) -> PeftModel:
    """Wrap Grounding DINO in a PeftModel: only the LoRA weights on the targeted decoder attention train."""
    patch_grounding_dino_for_peft()
    return _apply(model, lora or GroundingDinoLora(), None, "teacher_grounding_dino_lora")


def apply_lora_to_sam(model: nn.Module, lora: LoraSettings | None = None, freeze: SamFreeze | None = None
                      ) -> PeftModel:
    """Wrap SAM in a PeftModel: LoRA on the mask decoder's attention, and on the image encoder's with
    `lora.image_encoder`; an encoder unfrozen in `freeze` trains fully (and is saved with the adapter), which the
    2 % check then usually refuses for the image encoder."""
    lora, freeze = lora or SamLora(), freeze or SamFreeze()
    if getattr(lora, "image_encoder", False):  # a SamLora setting; plain LoraSettings have no such field
        targets = lora.target_modules
        lora = lora.model_copy(update={"target_modules": f"(?:{targets})|{SAM_ENCODER_LORA_TARGETS}"
                                       if isinstance(targets, str) else [*targets, "attn.qkv"]})
    unfrozen = [name for name, frozen in (("vision_encoder", freeze.image_encoder),
                                          ("prompt_encoder", freeze.prompt_encoder)) if not frozen]
    return _apply(model, lora, unfrozen, "teacher_sam_lora")


def verify_lora_freezing(model: nn.Module, max_trainable_fraction: float = 0.02) -> LoraReport:
    """Count trainable parameters; trainable / total must stay under max_trainable_fraction, else ModelError.

    A too-broad target pattern (e.g. a bare `q_proj` that also hits Grounding DINO's Swin backbone) shows up here
    before any compute is spent. Nothing trainable is an error too.
    """
    trainable = total = 0
    modules: set[str] = set()
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
            modules.add(_module_name(name))
    ratio = trainable / total if total else 0.0
    report = LoraReport(trainable=trainable, total=total, ratio=ratio, max_trainable_fraction=max_trainable_fraction,
                        trainable_modules=tuple(sorted(modules)))
    if trainable == 0:
        raise ModelError("no parameter is trainable: LoRA was not applied or matched nothing",
                         fix="apply LoRA first (apply_lora_to_grounding_dino / apply_lora_to_sam)")
    if ratio >= max_trainable_fraction:
        shown = ", ".join(report.trainable_modules[:5]) + (" ..." if len(modules) > 5 else "")
        raise ModelError(f"{trainable:,} of {total:,} parameters would train ({ratio:.2%}), over the "
                         f"max_trainable_fraction of {max_trainable_fraction:.2%}; trainable: {shown}",
                         where="lora.target_modules",
                         fix="anchor target_modules to the intended block (see the template), lower lora.r, or keep "
                             "the encoders frozen; raise lora.max_trainable_fraction only on purpose")
    return report


def merge_lora_weights(model: nn.Module) -> nn.Module:
    """Fold the LoRA updates into the base weights and drop the adapter layers: plain-model speed for inference.

    A model without adapters is returned as it is. The PeftModel's base is changed in place.
    """
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def _apply(model: nn.Module, settings: LoraSettings, modules_to_save: list[str] | None, kind: str) -> PeftModel:
    if isinstance(model, PeftModel):
        raise ModelError("the model already has LoRA adapters", fix="apply LoRA to the base model once")
    try:
        return get_peft_model(model, lora_config(settings, modules_to_save))
    except ValueError as exc:
        if "not found in the base model" in str(exc) or "Target modules" in str(exc):
            raise ConfigError(f"lora.target_modules matches no module of the model: {settings.target_modules}",
                              where=f"{kind}.lora.target_modules",
                              fix="use the template's pattern, which names the real transformers modules") from None
        raise


def _module_name(parameter_name: str) -> str:
    parts = parameter_name.removeprefix(_PEFT_PREFIX).split(".")
    for index, part in enumerate(parts):
        if part in _LORA_PARTS:
            return ".".join(parts[:index])
    if "modules_to_save" in parts:  # <module>.modules_to_save.<adapter>.<param>: a fully trained copy
        index = parts.index("modules_to_save")
        del parts[index:index + 2]
    return ".".join(parts[:-1])
