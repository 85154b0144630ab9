"""Grounding DINO's frozen stages cached on disk: backbone, text encoder and fusion encoder run once per image.

    cache = DinoFeatureCache(run_dir / "cache" / "grounding_dino_features", teacher, preprocessor, canvas)
    cache.fill(image_paths, chunks)             # runs the frozen stages for the (image, prompt chunk) pairs not cached
    with cache.replay(teacher.model, image_paths):
        outputs = teacher.model(pixel_values=cache.blank(len(paths)), pixel_mask=mask, labels=..., **chunk.encode(n))

With LoRA on the decoder only and no image augmentation, everything before the decoder (Swin backbone, BERT text
encoder, the deformable encoder with its text-image fusion) is a pure function of (image, prompt chunk).
`replay` swaps three submodules of the transformers model for stand-ins that serve stored tensors, so the model's own
forward (two-stage proposals, decoder, heads, Hungarian loss) runs unchanged on top:

- `backbone.conv_encoder` (the Swin): zero feature maps of the recorded shapes, and the level masks computed from
  `pixel_mask` exactly as transformers does. Only their shapes and masks reach the decoder once the encoder is
  skipped (the values fed the encoder's input alone); `test_dino_cache.py` checks the loss is unchanged.
- `text_backbone` (BERT): its output for the prompt chunk (kept in memory: one per chunk).
- `encoder`: the stored vision and text outputs of the fusion encoder.

Each image is padded to one canvas for the whole run (not to its batch's largest image), so its stored features do
not depend on which images share its batch. A file is keyed by the image's sha256, the preset, the input settings,
the canvas, the base weights (revision and sha256, or the random-init seed), the prompt chunk's token ids and the
storage dtype, and written atomically.

Disk: a pair's file holds the encoder's vision output (every position of every feature level) and text output,
d_model values each: about 11 MB per 800 x 1333 image and prompt chunk in float16 (19 MB for a 1333 x 1333 canvas),
so 10k images need 110-190 GB. Before filling, `fill` logs the estimate from the feature shapes; past `max_gb` it
stores the first images that fit and `replay` recomputes the others at every use (same values, slower steps).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoEncoderOutput

from mlcore.finetune.dino_cache_size import DEFAULT_MAX_GB, GB, readable_size, record_bytes, vision_positions
from mlcore.finetune.dino_frozen import pad_to_canvas
from mlcore.io import atomic_open, sha256_file
from mlcore.logs import get_logger
from mlcore.preprocess import PreprocessMeta, SingleModelPreprocessor, load_rgb
from mlcore.teachers.grounding_dino import _detector
from mlcore.teachers.prompts import PromptChunk
from mlcore.teachers.types import Teacher

log = get_logger(__name__)

class _StopAfterEncoder(Exception):
    """Raised by a forward hook once the encoder has run: filling the cache never runs the decoder."""

    def __init__(self, output: GroundingDinoEncoderOutput) -> None:
        super().__init__()
        self.output = output


class DinoFeatureCache:
    """Per (image, prompt chunk) outputs of Grounding DINO's frozen stages on disk; `replay` serves them."""

    def __init__(self, folder: str | os.PathLike[str], teacher: Teacher, preprocessor: SingleModelPreprocessor,
                 canvas: tuple[int, int], *, dtype: torch.dtype = torch.float16, progress: bool = True,
                 max_gb: float | None = DEFAULT_MAX_GB) -> None:
        self.folder = Path(folder)
        self.teacher = teacher
        self.preprocessor = preprocessor
        self.canvas = (int(canvas[0]), int(canvas[1]))
        self.dtype = dtype
        self.progress = progress
        self.max_bytes = None if max_gb is None else int(max_gb * GB)  # None: no limit
        self.stage_calls = 0  # (image, chunk) pairs run through the frozen stages and stored by this object
        self.recomputed = 0  # (image, chunk) pairs over the budget, run again inside `replay`
        self.over_budget = 0  # (image, chunk) pairs `fill` left out for the budget
        self.stored_bytes = 0  # on disk for the pairs this object was asked for
        self._counted: set[Path] = set()
        self._announced = self._warned = False
        self._vision_positions: int | None = None
        self._image_keys: dict[Path, str] = {}
        self._text: dict[tuple[int, ...], torch.Tensor] = {}

    # -- keys --------------------------------------------------------------------------------------------------

    def _image_key(self, image_path: Path) -> str:
        if image_path not in self._image_keys:
            self._image_keys[image_path] = sha256_file(image_path)
        return self._image_keys[image_path]

    def path(self, image_path: str | os.PathLike[str], chunk: PromptChunk) -> Path:
        config = self.preprocessor.config
        setting = (f"{self.teacher.preset.name}|{config.model_dump_json()}|{self.canvas[0]}x{self.canvas[1]}|"
                   f"{self.teacher.base_weights.cache_key}|{str(self.dtype)}|{chunk.input_ids}")
        digest = hashlib.sha256(setting.encode()).hexdigest()[:16]
        return self.folder / f"{self.teacher.preset.name}-{digest}-{self._image_key(Path(image_path))}.pt"

    # -- size ----------------------------------------------------------------------------------------------------

    def pair_bytes(self, chunk: PromptChunk) -> int | None:
        """Estimated file size of one (image, chunk) pair (None for a non-Swin backbone until its first file)."""
        config = _detector(self.teacher.model).config
        if self._vision_positions is None:
            self._vision_positions = vision_positions(config, self.canvas)
        if self._vision_positions is None:
            return None
        return record_bytes(self._vision_positions, len(chunk.input_ids), int(config.d_model), self.dtype)

    def estimate_bytes(self, image_count: int, chunks: Sequence[PromptChunk]) -> int | None:
        """Estimated disk use of `image_count` images x `chunks`."""
        sizes = [self.pair_bytes(chunk) for chunk in chunks]
        return None if None in sizes else image_count * sum(sizes)

    # -- filling -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def fill(self, image_paths: Sequence[str | os.PathLike[str]], chunks: Sequence[PromptChunk]) -> int:
        """Run the frozen stages for every (image, chunk) not stored yet, within the disk budget; returns how many
        were stored. Pairs past the budget are left out (the first images fit), and `replay` recomputes them."""
        paths = list(dict.fromkeys(Path(p) for p in image_paths))
        pairs = [(path, chunk) for path in paths for chunk in chunks]
        missing = []
        for path, chunk in pairs:
            file = self.path(path, chunk)
            if file.is_file():
                self._count(file)
            else:
                missing.append((path, chunk))
        if not missing:
            return 0
        if not self._announced:
            self._announce(len(paths), chunks)
        fitting = self._within_budget(missing)
        if fitting:
            log.info("caching Grounding DINO's frozen stages for %d (image, prompt) pair(s) in %s", len(fitting),
                     self.folder)
        model = self.teacher.model
        for path, chunk in tqdm(fitting, desc="grounding_dino features", unit="pair", disable=not self.progress):
            record = self.run_frozen_stages(model, path, chunk.input_ids)
            file = self.path(path, chunk)
            with atomic_open(file) as handle:
                torch.save(record, handle)
            self._count(file)
            self.stage_calls += 1
        return len(fitting)

    def _count(self, file: Path) -> None:
        if file not in self._counted:
            self._counted.add(file)
            self.stored_bytes += file.stat().st_size

    def _announce(self, image_count: int, chunks: Sequence[PromptChunk]) -> None:
        """One line before the first filling: the estimated size and the budget."""
        self._announced = True
        total = self.estimate_bytes(image_count, chunks)
        budget = "no budget" if self.max_bytes is None else f"budget {readable_size(self.max_bytes)}"
        size = "size unknown until the first file" if total is None else f"~{readable_size(total)}"
        log.info("DINO feature cache: %s for %d images x %d chunks (%s, %s, canvas %dx%d)", size, image_count,
                 len(chunks), budget, str(self.dtype).removeprefix("torch."), *self.canvas)

    def _within_budget(self, missing: list[tuple[Path, PromptChunk]]) -> list[tuple[Path, PromptChunk]]:
        """The leading pairs whose estimated files fit the budget beside what is stored; one log line otherwise."""
        if self.max_bytes is None:
            return missing
        if any(self.pair_bytes(chunk) is None for _, chunk in missing):  # non-Swin: measure one file first
            first = missing[0]
            file = self.path(*first)
            record = self.run_frozen_stages(self.teacher.model, first[0], first[1].input_ids)
            with atomic_open(file) as handle:
                torch.save(record, handle)
            self._vision_positions = int(record["vision"].shape[0])
            self._count(file)
            self.stage_calls += 1
            missing = missing[1:]
        projected, fitting = self.stored_bytes, []
        for path, chunk in missing:
            size = self.pair_bytes(chunk)
            assert size is not None
            if projected + size > self.max_bytes:
                break
            projected += size
            fitting.append((path, chunk))
        left = len(missing) - len(fitting)
        self.over_budget += left
        if left and not self._warned:
            self._warned = True
            log.warning("DINO feature cache: the %s budget (cache.max_gb) holds %d more (image, prompt) pair(s); "
                        "the other %d are recomputed at every use: same results, slower steps (raise cache.max_gb, "
                        "or lower training.longest_edge, to cache them all)", readable_size(self.max_bytes),
                        len(fitting), left)
        return fitting

    def run_frozen_stages(self, model: nn.Module, image_path: Path, input_ids: tuple[int, ...]) -> dict:
        """The stored record of one (image, chunk): the fusion encoder's vision and text outputs in the storage
        dtype, and the backbone's level shapes. The model must hold its own stages (not inside `replay`)."""
        detector = _detector(model)
        levels: list[list[tuple[int, int, int]]] = []
        hooks = [detector.model.encoder.register_forward_hook(_stop_after_encoder),
                 detector.model.backbone.conv_encoder.register_forward_hook(
                     lambda _m, _a, output: levels.append(
                         [(int(f.shape[1]), int(f.shape[2]), int(f.shape[3])) for f, _ in output]))]
        was_training = model.training
        model.eval()
        try:
            batch = self.preprocessor([load_rgb(image_path)])
            pixels, metas = pad_to_canvas(batch.pixel_values, batch.meta, self.canvas, self.preprocessor)
            pixels = pixels.to(device=self.teacher.device, dtype=self.teacher.dtype)
            mask = metas[0].pixel_mask()[None].to(self.teacher.device)
            text = _chunk(input_ids).encode(1, self.teacher.device)
            with torch.no_grad():
                try:
                    model(pixel_values=pixels, pixel_mask=mask, **text)
                    raise RuntimeError("the Grounding DINO encoder hook did not fire")
                except _StopAfterEncoder as stopped:
                    output = stopped.output
        finally:
            for hook in hooks:
                hook.remove()
            model.train(was_training)
        return {"vision": output.last_hidden_state_vision[0].to("cpu", self.dtype).clone(),
                "text": output.last_hidden_state_text[0].to("cpu", self.dtype).clone(),
                "levels": levels[0]}

    def blank(self, batch_size: int) -> torch.Tensor:
        """Pixel values of the canvas's shape: the replayed model reads only their shape, device and dtype."""
        return torch.zeros(batch_size, 3, *self.canvas, device=self.teacher.device, dtype=self.teacher.dtype)

    def metas(self, sizes: Sequence[tuple[int, int]]) -> list[PreprocessMeta]:
        """The canvas geometry of images of these original (height, width): no pixels are read."""
        return [self.preprocessor.plan(height, width).padded_to(self.canvas) for height, width in sizes]

    # -- replaying ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def replay(self, model: nn.Module, image_paths: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
        """Inside: `model(...)` on these images (in this order, padded to the canvas) runs from the cache."""
        base = _detector(model).model
        paths = [Path(p) for p in image_paths]
        originals = (base.text_backbone, base.encoder, base.backbone.conv_encoder)

        def install(modules: tuple[nn.Module, nn.Module, nn.Module]) -> None:
            base.text_backbone, base.encoder, base.backbone.conv_encoder = modules

        @contextlib.contextmanager
        def own_stages() -> Iterator[None]:  # the real stages, to recompute a pair past the budget
            install(originals)
            try:
                yield
            finally:
                install(stand_ins)

        state = _ReplayState(self, paths, lambda path, ids: self._recompute(model, path, ids, own_stages))
        stand_ins = (_CachedText(state, originals[0]), _CachedEncoder(state), _CachedBackbone(state))
        install(stand_ins)
        try:
            yield
        finally:
            install(originals)

    def _recompute(self, model: nn.Module, image_path: Path, input_ids: tuple[int, ...],
                   own_stages: Callable[[], contextlib.AbstractContextManager]) -> dict:
        """A pair the budget left out: run its frozen stages now (as `fill` would have), kept in memory only."""
        with own_stages():
            record = self.run_frozen_stages(model, image_path, input_ids)
        self.recomputed += 1
        return record

    def text_features(self, input_ids: tuple[int, ...], text_backbone: nn.Module, arguments: tuple) -> torch.Tensor:
        """BERT's output for one prompt chunk, computed once per cache object (frozen, eval mode)."""
        if input_ids not in self._text:
            with torch.no_grad():
                was_training = text_backbone.training
                text_backbone.eval()
                output = text_backbone(*(a[:1] for a in arguments), return_dict=True)
                text_backbone.train(was_training)
            self._text[input_ids] = output.last_hidden_state.detach()
        return self._text[input_ids]

    def load(self, image_path: Path, input_ids: tuple[int, ...]) -> dict | None:
        """The stored record of a pair, None when it is not on disk (left out for the budget, or never filled)."""
        path = self.path(image_path, _chunk(input_ids))
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)


def _chunk(input_ids: tuple[int, ...]) -> PromptChunk:
    """A chunk with only its token ids: all the frozen stages and the cache keys read."""
    return PromptChunk(text="", input_ids=tuple(input_ids), phrase_spans=(), phrase_classes=())


class _ReplayState:
    """What the three stand-ins share during one `replay`: the images, and the chunk the text stand-in saw."""

    def __init__(self, cache: DinoFeatureCache, paths: list[Path],
                 recompute: Callable[[Path, tuple[int, ...]], dict]) -> None:
        self.cache = cache
        self.paths = paths
        self.recompute = recompute
        self.input_ids: tuple[int, ...] | None = None
        self.records: list[dict] = []

    def load(self, input_ids: tuple[int, ...]) -> None:
        self.input_ids = input_ids
        records = []
        for path in self.paths:
            record = self.cache.load(path, input_ids)
            records.append(record if record is not None else self.recompute(path, input_ids))
        self.records = records


def _stop_after_encoder(_module: nn.Module, _args: object, output: GroundingDinoEncoderOutput) -> None:
    raise _StopAfterEncoder(output)


class _CachedText(nn.Module):
    """Stands in for BERT: the chunk's stored output, and tells the encoder stand-in which chunk this forward is."""

    def __init__(self, state: _ReplayState, text_backbone: nn.Module) -> None:
        super().__init__()
        self.state = state
        self.__dict__["original"] = text_backbone  # not a submodule: parameters are not listed twice

    def forward(self, input_ids: torch.Tensor, *arguments: torch.Tensor, return_dict: bool = True, **_: object):
        if input_ids.shape[0] != len(self.state.paths):
            raise ValueError(f"replaying {len(self.state.paths)} image(s), the batch has {input_ids.shape[0]}")
        ids = tuple(int(i) for i in input_ids[0].tolist())
        if any(tuple(row.tolist()) != ids for row in input_ids):
            raise ValueError("a replayed batch must share one prompt chunk")
        self.state.load(ids)
        features = self.state.cache.text_features(ids, self.original, (input_ids, *arguments))
        return BaseModelOutput(last_hidden_state=features.expand(input_ids.shape[0], -1, -1))


class _CachedBackbone(nn.Module):
    """Stands in for the Swin: zero maps of the stored level shapes, level masks exactly as transformers makes them."""

    def __init__(self, state: _ReplayState) -> None:
        super().__init__()
        self.state = state

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if tuple(pixel_values.shape[-2:]) != self.state.cache.canvas:
            raise ValueError(f"replayed inputs must be the cache's canvas {self.state.cache.canvas}, got "
                             f"{tuple(pixel_values.shape[-2:])}")
        out = []
        for channels, height, width in self.state.records[0]["levels"]:
            feature = pixel_values.new_zeros(pixel_values.shape[0], channels, height, width)
            mask = F.interpolate(pixel_mask[None].float(), size=(height, width)).to(torch.bool)[0]
            out.append((feature, mask))
        return out


class _CachedEncoder(nn.Module):
    """Stands in for the fusion encoder: the stored vision and text outputs of this batch's images and chunk."""

    def __init__(self, state: _ReplayState) -> None:
        super().__init__()
        self.state = state

    def forward(self, vision_features: torch.Tensor, **_: object) -> GroundingDinoEncoderOutput:
        device, dtype = vision_features.device, vision_features.dtype
        vision = torch.stack([r["vision"] for r in self.state.records]).to(device=device, dtype=dtype)
        text = torch.stack([r["text"] for r in self.state.records]).to(device=device, dtype=dtype)
        if vision.shape[:2] != vision_features.shape[:2]:
            raise ValueError(f"cached encoder output {tuple(vision.shape)} does not fit the batch "
                             f"{tuple(vision_features.shape)}")
        return GroundingDinoEncoderOutput(last_hidden_state_vision=vision, last_hidden_state_text=text)
