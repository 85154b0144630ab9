"""`mlcore pretrain-teachers`: rebuild the demo teachers shipped in mlcore/resources/teachers/ from scratch."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

stdout = Console(soft_wrap=True)


class PretrainFamily(str, Enum):
    both = "both"
    grounding_dino = "grounding_dino"
    sam = "sam"


def pretrain_teachers(
    family: Annotated[PretrainFamily, typer.Option(help="Which teacher to build.")] = PretrainFamily.both,
    work_dir: Annotated[Path, typer.Option(help="Checkpoints and history; a killed run resumes from here.")
                        ] = Path("data/pretrain"),
    output: Annotated[Path | None, typer.Option(help="Models folder to write <preset folder>/ into (default: "
                                                     "the shipped mlcore/resources/teachers/).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch threads per run (1 is fastest per core for these "
                                                     "small models, and bit-for-bit reproducible).")] = 1,
) -> None:
    """Train the shapes Grounding DINO and SAM from scratch on generated scenes, studio first, then varied (about
    2 hours for Grounding DINO and 1 for SAM on one CPU core, minutes on a GPU), and write them as Hugging Face
    folders."""
    import torch

    from mlcore.pretrain import dino, recipes, sam
    from mlcore.pretrain.export import copy_teacher_folder
    from mlcore.teachers.weights import BUNDLED_MODELS_DIR

    torch.set_num_threads(threads)
    models_dir = output or BUNDLED_MODELS_DIR
    command = shlex.join(["mlcore", *sys.argv[1:]])
    jobs = {"grounding_dino": (recipes.pretrain_grounding_dino, dino.PRESET),
            "sam": (recipes.pretrain_sam, sam.PRESET)}
    for name, (train, preset) in jobs.items():
        if family.value not in ("both", name):
            continue
        trained = train(work_dir / name, command=command)
        folder = copy_teacher_folder(trained.folder, models_dir / str(preset.folder))
        final = trained.history[-1] if trained.history else {}
        stdout.print(f"{name}: {folder} ({', '.join(f'{k} {v}' for k, v in final.items())})", highlight=False)
