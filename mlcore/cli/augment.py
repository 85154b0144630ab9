"""`mlcore augment list | preview`: see the augmentation rule table, and what a description does to your images."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlcore.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from mlcore.augmentation.rules import Rule
    from mlcore.augmentation.translator import PipelineInfo

augment_app = typer.Typer(help="Characteristic-based augmentation: list the options, preview a pipeline.",
                          no_args_is_help=True)
stdout = Console()


class PreviewMode(str, Enum):
    auto = "auto"
    detection_only = "detection_only"
    segmentation_only = "segmentation_only"
    detection_and_segmentation = "detection_and_segmentation"


@augment_app.command("list")
def augment_list() -> None:
    """Print every characteristic and environment option with the transforms it adds."""
    from mlcore.augmentation.rules import BASE, CHARACTERISTIC_RULES, ENVIRONMENT_RULES

    table = Table(title="characteristics (--characteristics a,b,c)", show_lines=True)
    for column in ("name", "meaning", "transforms"):
        table.add_column(column)
    for name, rule in CHARACTERISTIC_RULES.items():
        table.add_row(name, rule.meaning, _specs_text(rule))
    stdout.print(table)
    table = Table(title="environment (--lighting, --camera, --background, --distance)", show_lines=True)
    for column in ("key", "option", "meaning", "transforms"):
        table.add_column(column)
    for key, options in ENVIRONMENT_RULES.items():
        for option, rule in options.items():
            table.add_row(key, option, rule.meaning, _specs_text(rule) or "-")
    stdout.print(table)
    stdout.print(f"always: {_specs_text(BASE)}", highlight=False)
    stdout.print("intensity: low | medium | high (scales ranges x0.5 / x1 / x1.5 and probabilities x0.7 / x1 / x1.3)",
                 highlight=False)


@augment_app.command("preview")
def augment_preview(
    data: Annotated[Path, typer.Option("--data", help="COCO annotation JSON.")],
    output: Annotated[Path, typer.Option("--output", help="PNG to write the grid to.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder (default: found beside the JSON).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="augmentation.yaml; flags given as well override it.")] = None,
    characteristics: Annotated[Optional[str], typer.Option(
        help="Comma-separated, e.g. low_contrast,partially_hidden.")] = None,
    lighting: Annotated[Optional[str], typer.Option(help="stable | variable | poor.")] = None,
    camera: Annotated[Optional[str], typer.Option(help="fixed | moving | shaky.")] = None,
    background: Annotated[Optional[str], typer.Option(help="clean | busy | changing.")] = None,
    distance: Annotated[Optional[str], typer.Option(help="fixed | variable | close.")] = None,
    intensity: Annotated[Optional[str], typer.Option(help="low | medium | high (default medium).")] = None,
    mode: Annotated[PreviewMode, typer.Option(help="Carry masks or not; auto: masks when the images have them.")]
    = PreviewMode.auto,
    n: Annotated[int, typer.Option("--n", min=1, max=256, help="Number of augmented samples.")] = 16,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed for image choice and augmentation (default: the config's, else 0).")] = None,
) -> None:
    """Write a grid of augmented samples with boxes and masks drawn, and print the pipeline it used."""
    from mlcore.augmentation import get_pipeline
    from mlcore.augmentation.preview import dataset_has_masks, pick_indices, write_preview
    from mlcore.data.coco_dataset import CocoDataset

    chosen, environment, strength, config_seed = _description(config, characteristics, intensity)
    environment.update({key: value for key, value in
                        {"lighting": lighting, "camera": camera, "background": background,
                         "distance": distance}.items() if value is not None})
    seed = seed if seed is not None else (config_seed if config_seed is not None else 0)
    dataset = CocoDataset(data, images)
    if mode == PreviewMode.auto:
        has_masks = dataset_has_masks(dataset, pick_indices(dataset, n, seed))
        mode_name = "detection_and_segmentation" if has_masks else "detection_only"
    else:
        mode_name = mode.value
    pipeline = get_pipeline(chosen, environment, strength, mode_name, seed=seed)
    print_info(pipeline.info)
    try:
        result = write_preview(data, pipeline, output, n=n, seed=seed, dataset=dataset)
    except (ValueError, KeyError, IndexError) as error:  # a defect in unvalidated annotations, met while drawing
        raise DatasetError(f"cannot draw a sample: {error}", where=str(data),
                           fix=f"run `mlcore validate --data {data}` and preview the annotations.cleaned.json "
                               "it writes") from None
    stdout.print(f"wrote {result.path} ({result.rows}x{result.cols} tiles, {result.width}x{result.height} px, "
                 f"{result.objects} objects)", highlight=False)


def _description(config: Path | None, characteristics: str | None,
                 intensity: str | None) -> tuple[list[str], dict[str, str], str, int | None]:
    """Start from the config file (if any); flags replace what they name."""
    chosen: list[str] = []
    environment: dict[str, str] = {}
    strength, seed = "medium", None
    if config is not None:
        from mlcore.config import AugmentationConfig, load_config

        loaded = load_config(config)
        if not isinstance(loaded, AugmentationConfig):
            raise ConfigError(f"expected an augmentation config, got kind {getattr(loaded, 'kind', '?')!r}",
                              where=str(config), fix="pass a file with `kind: augmentation`")
        chosen, environment = list(loaded.characteristics), loaded.environment.model_dump()
        strength, seed = loaded.intensity, loaded.seed
    if characteristics is not None:
        chosen = [name.strip() for name in characteristics.split(",") if name.strip()]
    return chosen, environment, intensity or strength, seed


def print_info(info: PipelineInfo) -> None:
    """The pipeline as a table: transform, probability, parameters, and which options asked for it."""
    env = ", ".join(f"{key}={value}" for key, value in info.environment.items())
    masks = "carried" if info.carries_masks else "not carried"
    stdout.print(f"characteristics: {', '.join(info.characteristics) or '-'}\nenvironment: {env}\n"
                 f"intensity: {info.intensity}   mode: {info.mode} (masks {masks})", highlight=False)
    table = Table(title="augmentation pipeline (in order)")
    for column in ("transform", "p", "parameters", "asked for by"):
        table.add_column(column)
    for planned in info.transforms:
        params = ", ".join(f"{key}={_short(value)}" for key, value in planned.params.items()) or "-"
        table.add_row(planned.name, f"{planned.p:.2f}", params, ", ".join(planned.sources))
    stdout.print(table)


def _specs_text(rule: Rule) -> str:
    return "\n".join(f"{spec.name} (p={spec.p}): {spec.why}" for spec in rule.specs)


def _short(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)
