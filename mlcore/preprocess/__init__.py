"""Model inputs: each model's own resize / normalise / pad, and the maps between original images and model frames.

- `for_model(name, config)` -> `SingleModelPreprocessor` for 'grounding_dino', 'sam' or 'yolo' (from the
  preprocessing config, schema defaults when None); calling it gives `Preprocessed(pixel_values, meta)`.
- `ModeAwarePreprocessor.from_mode_config(mode_config, preprocessing_config)` runs the models the mode trains.
- `PreprocessMeta` maps boxes, points and masks into a model's input frame and back.
- `YoloLetterbox(config)`: the same YOLO letterbox with numpy and cv2 only, into a reusable float32 array (inference).
"""

from __future__ import annotations

from mlcore.preprocess.inputs import load_rgb
from mlcore.preprocess.meta import PreprocessMeta, stack_pixel_masks
from mlcore.preprocess.mode_aware import ModeAwarePreprocessor
from mlcore.preprocess.single import MODEL_NAMES, Preprocessed, SingleModelPreprocessor, for_model
from mlcore.preprocess.yolo_letterbox import YoloLetterbox

__all__ = [
    "MODEL_NAMES",
    "ModeAwarePreprocessor",
    "PreprocessMeta",
    "Preprocessed",
    "SingleModelPreprocessor",
    "YoloLetterbox",
    "for_model",
    "load_rgb",
    "stack_pixel_masks",
]
