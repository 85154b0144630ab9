"""Which scenes a pretraining step sees and which it is judged on: functions of seeds alone, so runs resume exactly."""

from __future__ import annotations

import numpy as np

from mlcore.data.shapes_world import Domain, Scene, draw_scene

# (width, height) of the `varied` corpus: one per step (a batch shares it, so nothing is padded), landscape, square
# and portrait, as labelled datasets come. The studio is square.
VARIED_SIZES: tuple[tuple[int, int], ...] = ((160, 160), (256, 192), (192, 256), (224, 160), (160, 224), (256, 160))
STUDIO_SIZE = 160
FIELD_SIZE = (256, 192)  # the demo dataset's


def training_scenes(seed: int, step: int, batch_size: int, domain: Domain = "studio") -> list[Scene]:
    """The batch of one step: a function of (seed, step, domain) alone, so a resumed run sees exactly the same data."""
    rng = np.random.default_rng([seed, step])
    size = (STUDIO_SIZE, STUDIO_SIZE) if domain == "studio" else VARIED_SIZES[int(rng.integers(len(VARIED_SIZES)))]
    return [draw_scene(rng, domain, size) for _ in range(batch_size)]


def held_out(domain: Domain, count: int, seed: int, size: int | tuple[int, int] = STUDIO_SIZE) -> list[Scene]:
    """A fixed evaluation set, drawn from its own seed stream (never a training step's)."""
    rng = np.random.default_rng([seed, 7919, 0 if domain == "studio" else 1])
    width, height = (size, size) if isinstance(size, int) else size
    return [draw_scene(rng, domain, (width, height)) for _ in range(count)]
