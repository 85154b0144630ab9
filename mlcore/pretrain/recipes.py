"""The demo teachers' recipes: model, data, schedule and evaluation of each, in one place.

`mlcore pretrain-teachers` runs them; the shipped folders under mlcore/resources/teachers/ came from exactly these
recipes (their SOURCE.json records the command, seed, code version and measured metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import GroundingDinoForObjectDetection

from mlcore.preprocess import for_model
from mlcore.pretrain import dino, sam
from mlcore.pretrain.runner import PretrainSpec, run_pretraining

DINO_SPEC = PretrainSpec(steps=14000, lr=5e-4, warmup=300, batch_size=4, seed=0, eval_every=2000)
EVAL_IMAGES = 100


@dataclass
class Trained:
    """A finished run: the model (fp32, eval mode), its tokenizer (DINO), and the evaluation history."""

    model: nn.Module
    tokenizer: Any
    history: list[dict[str, Any]]


def pretrain_grounding_dino(work_dir: Path, spec: PretrainSpec = DINO_SPEC, eval_images: int = EVAL_IMAGES) -> Trained:
    """Train (or resume, or just load when finished) the shapes Grounding DINO in work_dir."""
    torch.manual_seed(spec.seed)
    model = GroundingDinoForObjectDetection(dino.PRESET.build_config())
    hook = dino.train_proposal_head(model)
    tokenizer = dino.shapes_tokenizer()
    preprocessor = for_model("grounding_dino", {"grounding_dino": dino.PREPROCESSING})
    studio = dino.held_out("studio", eval_images, spec.seed)
    field = dino.held_out("field", eval_images, spec.seed)

    def loss_at(step: int) -> torch.Tensor:
        return dino.dino_loss(model, dino.dino_step_inputs(spec.seed, step, spec.batch_size, tokenizer, preprocessor))

    def evaluate(trained: nn.Module) -> dict[str, float]:
        return {f"{name}_{key}": round(value, 4) for name, scenes in (("studio", studio), ("field", field))
                for key, value in dino.evaluate_dino(trained, tokenizer, scenes).items()}

    history = run_pretraining(model, loss_at, spec, work_dir, evaluate, "grounding_dino")
    hook.remove()
    model.eval()
    return Trained(model=model, tokenizer=tokenizer, history=history)


SAM_SPEC = PretrainSpec(steps=15000, lr=5e-4, warmup=300, batch_size=4, seed=0, eval_every=1500)


def pretrain_sam(work_dir: Path, spec: PretrainSpec = SAM_SPEC, eval_images: int = EVAL_IMAGES // 2) -> Trained:
    """Train (or resume, or just load when finished) the shapes SAM in work_dir."""
    model = sam.new_shapes_sam(spec.seed)
    preprocessor = sam.sam_preprocessor()
    studio = dino.held_out("studio", eval_images, spec.seed)
    field = dino.held_out("field", eval_images, spec.seed)

    def loss_at(step: int) -> torch.Tensor:
        return sam.sam_step_loss(model, spec.seed, step, spec.batch_size, preprocessor)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        return {f"{name}_{key}": round(value, 4) for name, scenes in (("studio", studio), ("field", field))
                for key, value in sam.evaluate_sam(trained, scenes, preprocessor).items()}

    history = run_pretraining(model, loss_at, spec, work_dir, evaluate, "sam")
    model.eval()
    return Trained(model=model, tokenizer=None, history=history)
