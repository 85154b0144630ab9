"""The translation table: each object characteristic and environment option -> the transforms it calls for.

This table is the documentation of the augmentation knobs: `mlcore augment list` prints it, `get_pipeline_info`
shows what a choice turns into, and the tests check every row builds the transforms it names.

Values are for intensity `medium`. A `Span` is a (low, high) range and an `Amount` a single strength, both measured
from their no-op value (`neutral`); intensity moves them towards or away from it (`MAGNITUDE`) and scales each
probability (`PROBABILITY`, capped at 1). Anything else is a fixed setting. Every transform name and parameter is
albumentations 2.0.8's own; transforms are built with `strict=True`, so a misspelt argument fails instead of being
silently ignored.

Choices that shape the table:
- One transform per effect: brightness/contrast only in RandomBrightnessContrast, colour only in
  HueSaturationValue, geometry only in Affine. So two rules asking for the same effect merge into one transform with
  the wider range (translator.py) instead of stacking. ColorJitter is not used: it would repeat both.
- Geometry is size-preserving (Affine zoom and shift instead of crops to a fixed size), so every image keeps its own
  size; objects pushed out of the frame are dropped with their masks and labels.
- Pixel-level transforms never touch masks; dropout holes leave masks whole (an occluded object is still there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2

Intensity = Literal["low", "medium", "high"]
INTENSITIES: tuple[str, ...] = ("low", "medium", "high")
MAGNITUDE = {"low": 0.5, "medium": 1.0, "high": 1.5}  # distance of every Span/Amount from its neutral value
PROBABILITY = {"low": 0.7, "medium": 1.0, "high": 1.3}  # multiplies p (capped at 1.0)


@dataclass(frozen=True)
class Span:
    """A (low, high) range scaled by intensity around `neutral`, the value that changes nothing."""

    low: float
    high: float
    neutral: float = 0.0
    kind: Literal["float", "int", "odd"] = "float"  # odd: kernel sizes


@dataclass(frozen=True)
class Amount:
    """A single strength scaled by intensity around `neutral`."""

    value: float
    neutral: float = 0.0


@dataclass(frozen=True)
class TransformSpec:
    """One albumentations transform a rule asks for; `why` is the one-line reason shown to users."""

    name: str
    params: dict[str, Any]
    p: float
    why: str
    scale_p: bool = True  # False: probability is part of the definition (the base flip)
    needs_masks: bool = False  # only where masks are carried: boxes alone cannot follow the warp


@dataclass(frozen=True)
class Rule:
    """What a characteristic or environment option means, and the transforms that express it."""

    meaning: str
    specs: tuple[TransformSpec, ...] = field(default_factory=tuple)


def rule(meaning: str, *specs: TransformSpec) -> Rule:
    return Rule(meaning, tuple(specs))


T = TransformSpec

# Always applied: objects have no preferred left/right.
BASE = rule("always on", T("HorizontalFlip", {}, p=0.5, why="mirror views: left and right are equally likely",
                         scale_p=False))

CHARACTERISTIC_RULES: dict[str, Rule] = {
    "changes_shape": rule(
        "objects bend, fold or are seen skewed",
        T("Affine", {"shear": Span(-8, 8)}, p=0.4, why="skewed outlines (degrees of shear)"),
        T("Perspective", {"scale": Span(0.02, 0.06)}, p=0.3, why="outlines seen from other angles"),
        T("ElasticTransform", {"alpha": Amount(300), "sigma": 20.0}, p=0.2, needs_masks=True,
          why="smooth non-rigid bending (pixels); masks only, a box cannot follow it"),
    ),
    "changes_size": rule(
        "the same object appears large and small",
        T("Affine", {"scale": Span(0.7, 1.3, neutral=1.0)}, p=0.5, why="zoom out and in around the image centre"),
    ),
    "reflective_surface": rule(
        "shiny surfaces: glare, highlights and mirrored colours",
        T("RandomBrightnessContrast", {"brightness_limit": Span(-0.2, 0.3), "contrast_limit": Span(-0.2, 0.2)},
          p=0.5, why="glare and dull spots shift brightness and contrast"),
        T("RandomToneCurve", {"scale": Amount(0.15)}, p=0.3, why="bent tone curve: blown or darkened highlights"),
        T("HueSaturationValue", {"hue_shift_limit": Span(-5, 5), "sat_shift_limit": Span(-20, 20),
                                 "val_shift_limit": Span(-10, 20)}, p=0.3,
          why="small colour casts reflected from the surroundings"),
    ),
    "low_contrast": rule(
        "objects differ little in brightness from their surroundings",
        T("CLAHE", {"clip_limit": Span(1.0, 3.0, neutral=1.0)}, p=0.3, why="local contrast boost: faint edges"),
        T("RandomGamma", {"gamma_limit": Span(85, 115, neutral=100)}, p=0.4, why="mid-tones lighter and darker"),
        T("RandomBrightnessContrast", {"brightness_limit": Span(-0.1, 0.1), "contrast_limit": Span(-0.3, 0.1)},
          p=0.5, why="mostly lower contrast: train on fainter objects"),
    ),
    "moves_or_vibrates": rule(
        "objects move or vibrate while the shutter is open",
        T("MotionBlur", {"blur_limit": Span(3, 7, neutral=3, kind="odd")}, p=0.3, why="blur along the motion"),
    ),
    "semi_transparent": rule(
        "see-through objects (glass, film, liquids) take on the colours behind them",
        T("HueSaturationValue", {"hue_shift_limit": Span(-10, 10), "sat_shift_limit": Span(-30, 10),
                                 "val_shift_limit": Span(-15, 15)}, p=0.4, why="washed-out, shifted colours"),
        T("RandomBrightnessContrast", {"brightness_limit": Span(-0.15, 0.15), "contrast_limit": Span(-0.3, 0.1)},
          p=0.4, why="weak edges: lower contrast"),
    ),
    "similar_to_background": rule(
        "objects have the colours of their background",
        T("ToGray", {}, p=0.1, why="colour cannot be the only cue: shape must carry it"),
        T("HueSaturationValue", {"hue_shift_limit": Span(-15, 15), "sat_shift_limit": Span(-30, 30),
                                 "val_shift_limit": Span(-10, 10)}, p=0.4, why="colours shift: no fixed colour key"),
    ),
    "multiple_objects": rule(
        "several or many objects per image, often small",
        T("Affine", {"scale": Span(0.6, 1.0, neutral=1.0), "translate_percent": Span(-0.1, 0.1)}, p=0.4,
          why="zoomed-out, shifted crowded scenes; objects leaving the frame are dropped"),
    ),
    "partially_hidden": rule(
        "objects are partly covered by others or cut off",
        T("CoarseDropout", {"num_holes_range": Span(1, 4, neutral=1, kind="int"),
                            "hole_height_range": Span(0.05, 0.2), "hole_width_range": Span(0.05, 0.2)}, p=0.5,
          why="occluding patches (fraction of the image); objects mostly covered are dropped"),
    ),
}

ENVIRONMENT_RULES: dict[str, dict[str, Rule]] = {
    "lighting": {
        "stable": rule("constant light: nothing added"),
        "variable": rule(
            "light changes over the day or between sites",
            T("RandomBrightnessContrast", {"brightness_limit": Span(-0.3, 0.3), "contrast_limit": Span(-0.2, 0.2)},
              p=0.6, why="brighter and darker exposures"),
            T("RandomGamma", {"gamma_limit": Span(80, 120, neutral=100)}, p=0.3, why="exposure curve changes"),
        ),
        "poor": rule(
            "dim light: dark, noisy images",
            T("RandomBrightnessContrast", {"brightness_limit": Span(-0.3, 0.05), "contrast_limit": Span(-0.2, 0.0)},
              p=0.5, why="underexposure"),
            T("RandomGamma", {"gamma_limit": Span(100, 150, neutral=100)}, p=0.3, why="darker mid-tones"),
            T("GaussNoise", {"std_range": Span(0.02, 0.08)}, p=0.4, why="sensor noise (fraction of full scale)"),
            T("ISONoise", {"color_shift": Span(0.01, 0.04), "intensity": Span(0.1, 0.4)}, p=0.3,
              why="high-ISO colour noise"),
        ),
    },
    "camera": {
        "fixed": rule("mounted camera: nothing added"),
        "moving": rule(
            "handheld or vehicle camera: viewpoint changes",
            T("Affine", {"rotate": Span(-10, 10), "scale": Span(0.9, 1.1, neutral=1.0),
                         "translate_percent": Span(-0.05, 0.05)}, p=0.5, why="tilted, shifted framing"),
            T("Perspective", {"scale": Span(0.02, 0.05)}, p=0.3, why="oblique views"),
        ),
        "shaky": rule(
            "camera shakes while the shutter is open",
            T("MotionBlur", {"blur_limit": Span(3, 9, neutral=3, kind="odd")}, p=0.4, why="shake blur"),
            T("Affine", {"rotate": Span(-5, 5), "translate_percent": Span(-0.03, 0.03)}, p=0.3,
              why="small frame jitter"),
        ),
    },
    "background": {
        "clean": rule("plain background: nothing added"),
        "busy": rule(
            "cluttered background with object-like texture",
            T("CoarseDropout", {"num_holes_range": Span(2, 8, neutral=1, kind="int"),
                                "hole_height_range": Span(0.02, 0.08), "hole_width_range": Span(0.02, 0.08)}, p=0.4,
              why="random-noise patches act as clutter the model must ignore"),
        ),
        "changing": rule(
            "the scene behind the objects changes",
            T("HueSaturationValue", {"hue_shift_limit": Span(-15, 15), "sat_shift_limit": Span(-30, 30),
                                     "val_shift_limit": Span(-20, 20)}, p=0.5, why="scene colour shifts"),
            T("RandomToneCurve", {"scale": Amount(0.1)}, p=0.3, why="scene tone changes"),
        ),
    },
    "distance": {
        "fixed": rule("constant distance: nothing added"),
        "variable": rule(
            "objects at changing distances",
            T("Affine", {"scale": Span(0.75, 1.25, neutral=1.0)}, p=0.5, why="scale jitter"),
        ),
        "close": rule(
            "close-ups: objects fill the frame and are cut at its edges",
            T("Affine", {"scale": Span(1.1, 1.6, neutral=1.0), "translate_percent": Span(-0.15, 0.15)}, p=0.5,
              why="zoomed-in, shifted views; objects mostly outside the frame are dropped"),
        ),
    },
}

# Settings every instance of a transform gets, under whatever the rules ask for. Jitter parameters that no rule sets
# are held at their no-op value, so a merged transform only does what some rule asked for (albumentations' own
# defaults would add brightness jitter to a contrast-only rule, for example).
# Borders uncovered by geometry are YOLO's letterbox grey, given per channel (a scalar fills only the first one in
# some transforms). ElasticTransform's `approximate` mode truncates the smoothing kernel and frays edges: kept off.
GREY = (114, 114, 114)
TRANSFORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "Affine": {"keep_ratio": True, "border_mode": cv2.BORDER_CONSTANT, "fill": GREY, "fill_mask": 0},
    "Perspective": {"border_mode": cv2.BORDER_CONSTANT, "fill": GREY, "fill_mask": 0},
    "ElasticTransform": {"approximate": False, "border_mode": cv2.BORDER_CONSTANT, "fill": GREY, "fill_mask": 0},
    "RandomBrightnessContrast": {"brightness_limit": (0.0, 0.0), "contrast_limit": (0.0, 0.0)},
    "HueSaturationValue": {"hue_shift_limit": (0.0, 0.0), "sat_shift_limit": (0.0, 0.0),
                           "val_shift_limit": (0.0, 0.0)},
    "CoarseDropout": {"fill": "random_uniform"},  # fill_mask stays None: holes never cut masks
    "ISONoise": {"color_shift": (0.0, 0.0), "intensity": (0.0, 0.0)},
}

# Build order: geometry first (everything after works in the final frame), then occlusion, colour, and last the
# sensor effects (blur, noise), which happen in the camera after the scene is formed.
TRANSFORM_ORDER: tuple[str, ...] = (
    "HorizontalFlip", "Affine", "Perspective", "ElasticTransform",
    "CoarseDropout",
    "RandomBrightnessContrast", "RandomGamma", "CLAHE", "RandomToneCurve", "HueSaturationValue", "ToGray",
    "MotionBlur", "GaussNoise", "ISONoise",
)
SPATIAL_TRANSFORMS = frozenset({"HorizontalFlip", "Affine", "Perspective", "ElasticTransform"})


def environment_defaults() -> dict[str, str]:
    """The option each environment key takes when not given: the config schema's default, one source of truth."""
    from mlcore.config.schemas.data import Environment

    return {key: str(value.default) for key, value in Environment.model_fields.items()}
