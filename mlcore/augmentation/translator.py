"""From a description (characteristics, environment, intensity, mode) to a plan: concrete transforms, merged.

Merging, not stacking: every rule that names the same transform contributes to one instance of it, whose ranges are
the union (widest) of theirs, whose fixed numbers are the strongest, and whose probability is the highest. So
`reflective_surface` and `lighting: variable` give one RandomBrightnessContrast with the wider brightness range,
not two brightness jitters in a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlcore.augmentation.rules import (
    BASE,
    CHARACTERISTIC_RULES,
    ENVIRONMENT_RULES,
    INTENSITIES,
    MAGNITUDE,
    PROBABILITY,
    SPATIAL_TRANSFORMS,
    TRANSFORM_ORDER,
    Amount,
    Rule,
    Span,
    TransformSpec,
    environment_defaults,
)
from mlcore.data.mode import MODES
from mlcore.errors import ConfigError

MASK_MODES = ("segmentation_only", "detection_and_segmentation")


@dataclass
class PlannedTransform:
    """One transform of the final pipeline: concrete parameters, probability, and which options asked for it."""

    name: str
    params: dict[str, Any]
    p: float
    sources: list[str] = field(default_factory=list)  # e.g. "characteristic:changes_size", "lighting:poor"
    reasons: list[str] = field(default_factory=list)

    @property
    def spatial(self) -> bool:
        return self.name in SPATIAL_TRANSFORMS


@dataclass
class PipelineInfo:
    """What a description turns into, before anything is built: shown by `mlcore augment preview`."""

    characteristics: list[str]
    environment: dict[str, str]
    intensity: str
    mode: str
    transforms: list[PlannedTransform]

    @property
    def carries_masks(self) -> bool:
        return self.mode in MASK_MODES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return {
            "characteristics": list(self.characteristics), "environment": dict(self.environment),
            "intensity": self.intensity, "mode": self.mode, "carries_masks": self.carries_masks,
            "transforms": [
                {"name": t.name, "p": t.p, "params": {k: _jsonable(v) for k, v in t.params.items()},
                 "sources": list(t.sources), "reasons": list(t.reasons)}
                for t in self.transforms
            ],
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_choice(
    characteristics: Iterable[str], environment: Mapping[str, str] | None, intensity: str, mode: str,
    characteristic_rules: Mapping[str, Rule] = CHARACTERISTIC_RULES,
    environment_rules: Mapping[str, Mapping[str, Rule]] = ENVIRONMENT_RULES,
) -> tuple[list[str], dict[str, str], str, str]:
    """Validate names; unknown ones raise ConfigError listing the valid ones. Missing environment keys get defaults."""
    if isinstance(characteristics, str):
        characteristics = characteristics.split(",")
    chosen = [str(name).strip() for name in characteristics if str(name).strip()]
    valid = ", ".join(characteristic_rules)
    for name in chosen:
        if name not in characteristic_rules:
            raise ConfigError(f"unknown characteristic {name!r}; valid characteristics: {valid}",
                              where="characteristics", fix="use names from `mlcore augment list`")
    chosen = list(dict.fromkeys(chosen))  # repeats mean nothing more
    defaults = environment_defaults()
    env = {key: defaults.get(key, next(iter(options))) for key, options in environment_rules.items()}
    for key, value in dict(environment or {}).items():
        if key not in environment_rules:
            raise ConfigError(f"unknown environment key {key!r}; valid keys: {', '.join(environment_rules)}",
                              where="environment", fix="use names from `mlcore augment list`")
        if value is None:
            continue
        options = environment_rules[key]
        if value not in options:
            raise ConfigError(f"unknown {key} option {value!r}; valid options: {', '.join(options)}",
                              where=f"environment.{key}", fix="use names from `mlcore augment list`")
        env[key] = str(value)
    if intensity not in INTENSITIES:
        raise ConfigError(f"unknown intensity {intensity!r}; valid intensities: {', '.join(INTENSITIES)}",
                          where="intensity", fix="use low, medium or high")
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}", where="mode",
                          fix="use the annotation mode `mlcore validate` reported")
    return chosen, env, intensity, mode


def plan(
    characteristics: Iterable[str] = (), environment: Mapping[str, str] | None = None,
    intensity: str = "medium", mode: str = "detection_and_segmentation",
    characteristic_rules: Mapping[str, Rule] = CHARACTERISTIC_RULES,
    environment_rules: Mapping[str, Mapping[str, Rule]] = ENVIRONMENT_RULES,
) -> PipelineInfo:
    """The merged, intensity-scaled transforms for a description, in build order."""
    chosen, env, intensity, mode = check_choice(characteristics, environment, intensity, mode,
                                                characteristic_rules, environment_rules)
    requested: list[tuple[str, TransformSpec]] = [("base", spec) for spec in BASE.specs]
    for name in chosen:
        requested += [(f"characteristic:{name}", spec) for spec in characteristic_rules[name].specs]
    for key, option in env.items():
        requested += [(f"{key}:{option}", spec) for spec in environment_rules[key][option].specs]
    carries_masks = mode in MASK_MODES
    scaled = [(source, scale_spec(spec, intensity)) for source, spec in requested
              if carries_masks or not spec.needs_masks]
    return PipelineInfo(chosen, env, intensity, mode, merge(scaled))


def scale_spec(spec: TransformSpec, intensity: str) -> PlannedTransform:
    """Resolve Spans and Amounts at this intensity; scale p unless the spec fixes it."""
    magnitude = MAGNITUDE[intensity]
    params = {key: _scale_value(value, magnitude) for key, value in spec.params.items()}
    p = min(1.0, round(spec.p * PROBABILITY[intensity], 3)) if spec.scale_p else spec.p
    return PlannedTransform(spec.name, params, p, reasons=[spec.why])


def _scale_value(value: Any, magnitude: float) -> Any:
    if isinstance(value, Span):
        low = value.neutral + (value.low - value.neutral) * magnitude
        high = value.neutral + (value.high - value.neutral) * magnitude
        return (_round(low, value.kind), _round(high, value.kind))
    if isinstance(value, Amount):
        return round(value.neutral + (value.value - value.neutral) * magnitude, 6)
    return value


def _round(number: float, kind: str) -> float | int:
    if kind == "int":
        return int(math.floor(number + 0.5))
    if kind == "odd":  # kernel sizes: nearest odd number, at least 3
        return max(3, 2 * int(math.floor((number - 1) / 2 + 0.5)) + 1)
    return round(number, 6)


def merge(requested: list[tuple[str, PlannedTransform]]) -> list[PlannedTransform]:
    """One transform per name: widest ranges, strongest fixed numbers, highest p; sorted into build order."""
    merged: dict[str, PlannedTransform] = {}
    for source, item in requested:
        current = merged.get(item.name)
        if current is None:
            merged[item.name] = PlannedTransform(item.name, dict(item.params), item.p, [source], list(item.reasons))
            continue
        for key, value in item.params.items():
            current.params[key] = _merge_value(item.name, key, current.params.get(key), value)
        current.p = max(current.p, item.p)
        current.sources.append(source)
        current.reasons.extend(reason for reason in item.reasons if reason not in current.reasons)
    order = {name: index for index, name in enumerate(TRANSFORM_ORDER)}
    return sorted(merged.values(), key=lambda t: order.get(t.name, len(order)))


def _merge_value(name: str, key: str, old: Any, new: Any) -> Any:
    if old is None or old == new:
        return new
    if isinstance(old, tuple) and isinstance(new, tuple):
        return (min(old[0], new[0]), max(old[1], new[1]))
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return max(old, new)
    raise ValueError(f"rules disagree on {name}.{key}: {old!r} vs {new!r}; fix the table in rules.py")
