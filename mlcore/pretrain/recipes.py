"""The demo teachers' recipes: model, data, schedule and evaluation of each, in one place.

`mlcore pretrain-teachers` runs them; the shipped folders under mlcore/resources/teachers/ came from exactly these
recipes (their SOURCE.json records the command, seed, each stage's recipe, code version and measured metrics).

Each teacher trains in two stages: the `studio` corpus teaches the shapes from scratch, then the `varied` corpus
(textures, noise, overlaps, every colour and aspect) makes them hold up off the studio. A finished stage leaves a
Hugging Face folder (`<work_dir>/stage<N>-<domain>/teacher/`, weights stored in fp16) and the next stage starts from
that folder, so a stage can be rerun alone and each stage's weights are what the next one really started from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import GroundingDinoForObjectDetection

from mlcore.io import sha256_file
from mlcore.preprocess import for_model
from mlcore.pretrain import dino, sam
from mlcore.pretrain.export import SUMS_FILE, save_teacher_folder
from mlcore.pretrain.runner import PretrainSpec, run_pretraining
from mlcore.pretrain.scenes import FIELD_SIZE, held_out
from mlcore.teachers.weights import SOURCE_FILE

DINO_STAGES = (PretrainSpec(steps=14000, lr=5e-4, warmup=300, batch_size=4, seed=0, eval_every=2000),
               PretrainSpec(steps=12000, lr=2e-4, warmup=200, batch_size=4, seed=0, eval_every=1500, domain="varied"))
SAM_STAGES = (PretrainSpec(steps=10000, lr=5e-4, warmup=300, batch_size=4, seed=0, eval_every=2000),
              PretrainSpec(steps=8000, lr=2e-4, warmup=200, batch_size=4, seed=0, eval_every=2000, domain="varied"))
EVAL_IMAGES = 100
COMMAND = "mlcore pretrain-teachers"


@dataclass
class Trained:
    """A finished run: the model (fp32 from the fp16-stored folder, eval mode), its tokenizer (DINO), every stage's
    recipe and evaluation history, and the folder the last stage wrote."""

    model: nn.Module
    tokenizer: Any
    stages: list[dict[str, Any]]
    folder: Path

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.stages[-1]["history"]


def pretrain_grounding_dino(work_dir: Path, stages: Sequence[PretrainSpec] = DINO_STAGES,
                            eval_images: int = EVAL_IMAGES, command: str = COMMAND) -> Trained:
    """Train (or resume, or just load when finished) the shapes Grounding DINO in work_dir, stage by stage."""
    tokenizer = dino.shapes_tokenizer()
    preprocessor = for_model("grounding_dino", {"grounding_dino": dino.PREPROCESSING})
    scenes = _evaluation_scenes(eval_images, stages[0].seed)

    def build() -> nn.Module:
        torch.manual_seed(stages[0].seed)
        return GroundingDinoForObjectDetection(dino.PRESET.build_config())

    def evaluate(trained: nn.Module) -> dict[str, float]:
        return {f"{name}_{key}": round(value, 4) for name, held in scenes.items()
                for key, value in dino.evaluate_dino(trained, tokenizer, held).items()}

    def train(model: nn.Module, spec: PretrainSpec, stage_dir: Path) -> list[dict[str, Any]]:
        hook = dino.train_proposal_head(model)

        def loss_at(step: int) -> torch.Tensor:
            return dino.dino_loss(model, dino.dino_step_inputs(spec.seed, step, spec.batch_size, tokenizer,
                                                               preprocessor, spec.domain))

        history = run_pretraining(model, loss_at, spec, stage_dir, evaluate, f"grounding_dino {spec.domain}")
        hook.remove()
        return history

    return _run_stages("grounding_dino", build, train, stages, work_dir, tokenizer, dino.PREPROCESSING, command)


def pretrain_sam(work_dir: Path, stages: Sequence[PretrainSpec] = SAM_STAGES, eval_images: int = EVAL_IMAGES // 2,
                 command: str = COMMAND) -> Trained:
    """Train (or resume, or just load when finished) the shapes SAM in work_dir, stage by stage."""
    preprocessor = sam.sam_preprocessor()
    scenes = _evaluation_scenes(eval_images, stages[0].seed)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        return {f"{name}_{key}": round(value, 4) for name, held in scenes.items()
                for key, value in sam.evaluate_sam(trained, held, preprocessor).items()}

    def train(model: nn.Module, spec: PretrainSpec, stage_dir: Path) -> list[dict[str, Any]]:
        def loss_at(step: int) -> torch.Tensor:
            return sam.sam_step_loss(model, spec.seed, step, spec.batch_size, preprocessor, spec.domain)

        return run_pretraining(model, loss_at, spec, stage_dir, evaluate, f"sam {spec.domain}")

    return _run_stages("sam", lambda: sam.new_shapes_sam(stages[0].seed), train, stages, work_dir, None,
                       sam.PREPROCESSING, command)


def _evaluation_scenes(count: int, seed: int) -> dict[str, list]:
    """The pretraining domain at its own size, and the demo's domain (never trained on) at the demo's size."""
    return {"studio": held_out("studio", count, seed), "field": held_out("field", count, seed, FIELD_SIZE)}


def _run_stages(family: str, build: Callable[[], nn.Module],
                train: Callable[[nn.Module, PretrainSpec, Path], list[dict[str, Any]]], stages: Sequence[PretrainSpec],
                work_dir: Path, tokenizer: Any, preprocessing: dict[str, Any], command: str) -> Trained:
    model, done, folder = build(), [], work_dir
    for number, spec in enumerate(stages, start=1):
        folder = work_dir / f"stage{number}-{spec.domain}" / "teacher"
        if not (folder / SUMS_FILE).is_file():
            history = train(model, spec, folder.parent)
            save_teacher_folder(model, tokenizer, family, folder, preprocessing=preprocessing, command=command,
                                stages=[*done, {"recipe": asdict(spec), "history": history}])
        done = _stages_of(folder)
        if done[-1]["recipe"] != asdict(spec):
            raise ValueError(f"{folder} was written by another recipe ({done[-1]['recipe']}); use another work "
                             f"folder or delete it to train this stage again")
        # The next stage (and the user) starts from the weights as stored: fp16, computed in fp32.
        model = type(model).from_pretrained(folder).float()
    model.eval()
    return Trained(model=model, tokenizer=tokenizer, stages=done, folder=folder)


def _stages_of(folder: Path) -> list[dict[str, Any]]:
    """The stages recorded in a teacher folder's SOURCE.json (a one-stage folder written before stages existed
    records its recipe and history at the top level)."""
    source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    return source.get("stages") or [{"recipe": {**source["recipe"], "domain": "studio"}, "history": source["history"],
                                     "weights_sha256": sha256_file(folder / "model.safetensors")}]
