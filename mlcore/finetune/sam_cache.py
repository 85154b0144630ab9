"""SAM image embeddings cached on disk: the frozen encoder runs once per image, ever, not once per epoch.

    cache = SamEmbeddingCache(run_dir / "cache" / "sam_embeddings", teacher)
    cache.fill(image_paths)                     # encodes only the images not cached yet
    embedding = cache.get(image_path)           # (1, C, h, w) in the model's dtype, on its device

A file is keyed by the image file's sha256, the preset, the input size and normalisation, and the base weights
(revision and sha256, or the random-init seed), so a changed image, another SAM checkpoint or other inputs never
reuse a stale embedding. Stored fp16 (half the disk,
plenty for a decoder's input), written atomically: a run killed while caching leaves no torn file behind.

An encoder with LoRA on it changes its embeddings every step: `LiveSamEmbeddings` has the same interface and encodes
on every call instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from mlcore.io import atomic_open, sha256_file
from mlcore.logs import get_logger
from mlcore.preprocess import load_rgb
from mlcore.teachers import sam as sam_teacher  # module attribute: tests count sam_teacher.image_embeddings calls
from mlcore.teachers.types import Teacher

log = get_logger(__name__)

ENCODE_BATCH = 4  # images per encoder call: bounds memory at 1024 px


class SamEmbeddingCache:
    """Per-image SAM embeddings on disk (fp16), keyed by image content, preset and input size."""

    def __init__(self, folder: str | os.PathLike[str], teacher: Teacher, *, progress: bool = True) -> None:
        self.folder = Path(folder)
        self.teacher = teacher
        self.preprocessor = teacher.preprocessor()
        self.input_size = int(self.preprocessor.config.longest_edge)
        self.progress = progress
        self.encoder_calls = 0  # images encoded by this object (the rest came from disk)
        self._keys: dict[Path, str] = {}

    def key(self, image_path: str | os.PathLike[str]) -> str:
        path = Path(image_path)
        if path not in self._keys:
            setting = f"{self.preprocessor.config.model_dump_json()}|{self.teacher.base_weights.cache_key}"
            digest = hashlib.sha256(setting.encode()).hexdigest()[:16]
            self._keys[path] = f"{self.teacher.preset.name}-{self.input_size}-{digest}-{sha256_file(path)}"
        return self._keys[path]

    def path(self, image_path: str | os.PathLike[str]) -> Path:
        return self.folder / f"{self.key(image_path)}.pt"

    def fill(self, image_paths: Sequence[str | os.PathLike[str]]) -> int:
        """Encode and store every image not cached yet; returns how many were encoded."""
        missing = list(dict.fromkeys(Path(p) for p in image_paths if not self.path(p).is_file()))
        if not missing:
            return 0
        log.info("caching SAM embeddings of %d image(s) in %s", len(missing), self.folder)
        bar = tqdm(total=len(missing), desc="sam embeddings", unit="img", disable=not self.progress)
        for start in range(0, len(missing), ENCODE_BATCH):
            part = missing[start:start + ENCODE_BATCH]
            batch = self.preprocessor([load_rgb(path) for path in part])
            pixel_values = batch.pixel_values.to(device=self.teacher.device, dtype=self.teacher.dtype)
            embeddings = sam_teacher.image_embeddings(self.teacher.model, pixel_values)
            for path, embedding in zip(part, embeddings):
                with atomic_open(self.path(path)) as handle:
                    torch.save(embedding.detach().to("cpu", torch.float16).clone(), handle)
            self.encoder_calls += len(part)
            bar.update(len(part))
        bar.close()
        return len(missing)

    def get(self, image_path: str | os.PathLike[str]) -> torch.Tensor:
        """(1, C, h, w) embedding in the model's dtype and device; the image must have been `fill`ed."""
        embedding = torch.load(self.path(image_path), map_location="cpu", weights_only=True)
        return embedding[None].to(device=self.teacher.device, dtype=self.teacher.dtype)


class LiveSamEmbeddings:
    """SamEmbeddingCache's interface for an encoder that trains: every `get` encodes the image, with gradients
    while the model trains, so the image encoder's LoRA learns."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.preprocessor = teacher.preprocessor()
        self.encoder_calls = 0

    def fill(self, image_paths: Sequence[str | os.PathLike[str]]) -> int:
        return 0  # nothing to cache

    def get(self, image_path: str | os.PathLike[str]) -> torch.Tensor:
        batch = self.preprocessor([load_rgb(image_path)])
        pixel_values = batch.pixel_values.to(device=self.teacher.device, dtype=self.teacher.dtype)
        self.encoder_calls += 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.teacher.model.training):
            # not get_image_embeddings(): transformers runs it under no_grad, so the encoder's LoRA would not learn
            return self.teacher.model.vision_encoder(pixel_values)[0]
