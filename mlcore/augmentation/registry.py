"""The one entry point to augmentation: what exists, what a description would apply, and the pipeline itself.

`AUGMENTATIONS` is the single instance; the module-level functions in `mlcore.augmentation` are its methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mlcore.augmentation.rules import CHARACTERISTIC_RULES, ENVIRONMENT_RULES, Rule
from mlcore.augmentation.translator import PipelineInfo, plan

if TYPE_CHECKING:
    from mlcore.augmentation.pipeline import AugmentationPipeline
    from mlcore.config.schemas.data import AugmentationConfig

DEFAULT_MODE = "detection_and_segmentation"


class AugmentationRegistry:
    """Characteristic and environment rules (rules.py) plus the translator and factory behind them."""

    def __init__(self, characteristics: Mapping[str, Rule], environments: Mapping[str, Mapping[str, Rule]]) -> None:
        self.characteristics = dict(characteristics)
        self.environments = {key: dict(options) for key, options in environments.items()}

    def get_available_characteristics(self) -> dict[str, str]:
        """Characteristic name -> what it means."""
        return {name: rule.meaning for name, rule in self.characteristics.items()}

    def get_available_environments(self) -> dict[str, dict[str, str]]:
        """Environment key (lighting, camera, ...) -> option -> what it means."""
        return {key: {option: rule.meaning for option, rule in options.items()}
                for key, options in self.environments.items()}

    def get_pipeline_info(
        self, characteristics: Iterable[str] = (), environment: Mapping[str, str] | Any | None = None,
        intensity: str = "medium", mode: str = DEFAULT_MODE,
    ) -> PipelineInfo:
        """What would be applied, with parameters and the options that asked for each transform; builds nothing."""
        return plan(characteristics, _environment_dict(environment), intensity, mode,
                    self.characteristics, self.environments)

    def get_pipeline(
        self, characteristics: Iterable[str] = (), environment: Mapping[str, str] | Any | None = None,
        intensity: str = "medium", mode: str = DEFAULT_MODE, seed: int | None = None,
    ) -> AugmentationPipeline:
        """The callable pipeline; the same description and seed give the same outputs, call after call."""
        from mlcore.augmentation.pipeline import AugmentationPipeline

        return AugmentationPipeline(self.get_pipeline_info(characteristics, environment, intensity, mode), seed=seed)

    def from_config(self, config: AugmentationConfig, mode: str = DEFAULT_MODE) -> AugmentationPipeline:
        """The pipeline an `augmentation.yaml` describes (its seed included)."""
        return self.get_pipeline(config.characteristics, config.environment, config.intensity, mode,
                                 seed=config.seed)


def _environment_dict(environment: Any) -> dict[str, str] | None:
    """Accept a mapping or the config's Environment model."""
    if environment is None or isinstance(environment, Mapping):
        return environment
    if hasattr(environment, "model_dump"):
        return environment.model_dump()
    raise TypeError(f"environment must be a mapping or an Environment config, not {type(environment).__name__}")


AUGMENTATIONS = AugmentationRegistry(CHARACTERISTIC_RULES, ENVIRONMENT_RULES)
