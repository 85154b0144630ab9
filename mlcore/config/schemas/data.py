"""Image-side configs: how each model's inputs are resized/normalised, and which augmentations the data calls for."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlcore.config.schemas.common import ConfigModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)

OBJECT_CHARACTERISTICS = (
    "changes_shape",
    "changes_size",
    "reflective_surface",
    "low_contrast",
    "moves_or_vibrates",
    "semi_transparent",
    "similar_to_background",
    "multiple_objects",
    "partially_hidden",
)
Characteristic = Literal[OBJECT_CHARACTERISTICS]


_STRATEGY_HELP = (
    "keep_aspect_ratio: short side to shortest_edge, long side capped at longest_edge; "
    "resize_longest_side: long side to longest_edge; letterbox: fit inside pad_to, pad the rest."
)
_SHORTEST_HELP = "keep_aspect_ratio: target short side in pixels; null for the other strategies."
_LONGEST_HELP = "Long side limit (keep_aspect_ratio) or target (resize_longest_side, letterbox) in pixels."
_PAD_TO_HELP = "Pad to this [height, width]; null: no fixed padding (a batch pads to its largest image)."
_PAD_VALUE_HELP = (
    "Fill value of padded pixels on the 0-255 scale; the input tensor holds pad_value x rescale_factor there, not "
    "mean/std-normalised: 0 pads with zeros (the Hugging Face processors), 114 with 1/255 is ultralytics' grey."
)
_RESCALE_HELP = "Multiply pixels by this before mean/std: 1/255 (0.00392156862745098) for 0-1, 1.0 to stay 0-255."
_MEAN_HELP = "Per-channel (RGB) mean subtracted after rescaling."
_STD_HELP = "Per-channel (RGB) std divided by after rescaling."

Strategy = Literal["keep_aspect_ratio", "resize_longest_side", "letterbox"]
Size2 = tuple[int, int]
Rgb = tuple[float, float, float]


class ImagePreprocessing(ConfigModel):
    """Resize, pad and normalise for one model; subclasses set each model's defaults."""

    strategy: Strategy = Field(default="letterbox", description=_STRATEGY_HELP)
    shortest_edge: int | None = Field(default=None, ge=1, description=_SHORTEST_HELP)
    longest_edge: int = Field(default=640, ge=1, description=_LONGEST_HELP)
    pad_to: Size2 | None = Field(default=(640, 640), description=_PAD_TO_HELP)
    pad_value: float = Field(default=114.0, ge=0.0, le=255.0, description=_PAD_VALUE_HELP)
    rescale_factor: float = Field(default=1 / 255, gt=0.0, description=_RESCALE_HELP)
    mean: Rgb = Field(default=(0.0, 0.0, 0.0), description=_MEAN_HELP)
    std: Rgb = Field(default=(1.0, 1.0, 1.0), description=_STD_HELP)

    @model_validator(mode="after")
    def _strategy_has_sizes(self) -> ImagePreprocessing:
        if self.strategy == "keep_aspect_ratio" and self.shortest_edge is None:
            raise ValueError("keep_aspect_ratio needs shortest_edge")
        if self.shortest_edge is not None and self.shortest_edge > self.longest_edge:
            raise ValueError("shortest_edge must not exceed longest_edge")
        if self.strategy == "letterbox" and self.pad_to is None:
            raise ValueError("letterbox needs pad_to [height, width]")
        if self.pad_to is not None and min(self.pad_to) < 1:
            raise ValueError("pad_to sizes must be positive")
        if any(value <= 0 for value in self.std):
            raise ValueError("std values must be positive")
        return self


class YoloPreprocessing(ImagePreprocessing):
    """ultralytics' own input: 640 letterbox padded with grey 114, pixels scaled to 0-1, no mean/std."""


class GroundingDinoPreprocessing(ImagePreprocessing):
    """The Grounding DINO image processor: short side 800, long side at most 1333, ImageNet normalisation."""

    strategy: Strategy = Field(default="keep_aspect_ratio", description=_STRATEGY_HELP)
    shortest_edge: int | None = Field(default=800, ge=1, description=_SHORTEST_HELP)
    longest_edge: int = Field(default=1333, ge=1, description=_LONGEST_HELP)
    pad_to: Size2 | None = Field(default=None, description=_PAD_TO_HELP)
    pad_value: float = Field(default=0.0, ge=0.0, le=255.0, description=_PAD_VALUE_HELP)
    mean: Rgb = Field(default=IMAGENET_MEAN, description=_MEAN_HELP)
    std: Rgb = Field(default=IMAGENET_STD, description=_STD_HELP)


class SamPreprocessing(ImagePreprocessing):
    """The SAM image processor: long side 1024, pad to 1024x1024, pixel mean/std on the 0-255 scale."""

    strategy: Strategy = Field(default="resize_longest_side", description=_STRATEGY_HELP)
    longest_edge: int = Field(default=1024, ge=1, description=_LONGEST_HELP)
    pad_to: Size2 | None = Field(default=(1024, 1024), description=_PAD_TO_HELP)
    pad_value: float = Field(default=0.0, ge=0.0, le=255.0, description=_PAD_VALUE_HELP)
    rescale_factor: float = Field(default=1.0, gt=0.0, description=_RESCALE_HELP)
    mean: Rgb = Field(default=SAM_PIXEL_MEAN, description=_MEAN_HELP)
    std: Rgb = Field(default=SAM_PIXEL_STD, description=_STD_HELP)


class PreprocessingConfig(ConfigModel):
    """Input pipelines of the three model families; changing them invalidates cached teacher embeddings."""

    kind: Literal["preprocessing"] = Field(default="preprocessing", description="Config type.")
    grounding_dino: GroundingDinoPreprocessing = Field(
        default_factory=GroundingDinoPreprocessing, description="Grounding DINO teacher inputs."
    )
    sam: SamPreprocessing = Field(default_factory=SamPreprocessing, description="SAM teacher inputs.")
    yolo: YoloPreprocessing = Field(default_factory=YoloPreprocessing, description="YOLO / FastSAM student inputs.")


class Environment(ConfigModel):
    lighting: Literal["stable", "variable", "poor"] = Field(
        default="stable", description="stable, variable (brightness/contrast jitter) or poor (noise, low light)."
    )
    camera: Literal["fixed", "moving", "shaky"] = Field(
        default="fixed", description="fixed, moving (perspective/scale) or shaky (motion blur)."
    )
    background: Literal["clean", "busy", "changing"] = Field(
        default="clean", description="clean, busy (clutter) or changing (colour/scene shifts)."
    )
    distance: Literal["fixed", "variable", "close"] = Field(
        default="variable", description="fixed, variable (scale jitter) or close (large crops, partial views)."
    )


class AugmentationConfig(ConfigModel):
    """Describe the objects and scene; mlcore picks the albumentations pipeline from this description."""

    kind: Literal["augmentation"] = Field(default="augmentation", description="Config type.")
    characteristics: list[Characteristic] = Field(
        default_factory=list, description=f"Object traits, any of: {', '.join(OBJECT_CHARACTERISTICS)}."
    )
    environment: Environment = Field(default_factory=Environment, description="Where the camera is used.")
    intensity: Literal["low", "medium", "high"] = Field(
        default="medium", description="Overall augmentation strength: low for large datasets, high for small ones."
    )
    seed: int | None = Field(default=None, ge=0, description="Seed for the augmentation RNG; null: random.")

    @model_validator(mode="after")
    def _no_repeats(self) -> AugmentationConfig:
        if len(set(self.characteristics)) != len(self.characteristics):
            raise ValueError("characteristics lists a trait more than once")
        return self
