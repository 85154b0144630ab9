"""The frozen-stage cache fits a disk: its size is estimated from the feature shapes and logged before filling; past
`max_gb` the first images are cached and the others recomputed inside `replay`, with the same losses and detections."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.objects import sample_objects
from mlcore.finetune.dino_cache import DinoFeatureCache
from mlcore.finetune.dino_cache_size import feature_level_shapes
from mlcore.finetune.dino_frozen import dataset_canvas, keep_frozen_stages_in_eval
from mlcore.finetune.evaluation import dino_detections
from mlcore.finetune.inputs import dino_preprocessor
from mlcore.finetune.losses import dino_labels
from mlcore.preprocess import load_rgb
from mlcore.teachers import apply_lora_to_grounding_dino, build_prompt_chunks, load_grounding_dino
from mlcore.teachers.presets import GROUNDING_DINO_PRESETS
from tests.unit.finetune.test_dino_cache import dino_config
from tests.unit.finetune.test_trainer import prepared


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared(tmp_path_factory.mktemp("budget"), "detection_only", num_images=8)


def adapted_teacher():
    """The same LoRA teacher every call (LoRA's A init draws from the global RNG; B made non-zero)."""
    teacher = load_grounding_dino("tiny")
    torch.manual_seed(0)
    teacher.model = apply_lora_to_grounding_dino(teacher.model)
    with torch.no_grad():
        for name, parameter in teacher.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    keep_frozen_stages_in_eval(teacher.model)
    return teacher


def setting(data: Path):
    mode = ModeConfig.read(data)
    dataset = CocoDataset(data / "train.json", mode.images_root)
    samples = [dataset[i] for i in range(len(dataset))]
    class_of_category = {int(cid): int(index) for index, cid in mode.category_ids.items()}
    return mode, dataset, samples, class_of_category


def train_steps(data: Path, cache_folder: Path | None, *, max_gb: float | None, dtype=torch.float32, steps: int = 3):
    """A few AdamW steps over batches of two (as the trainer's batch_loss), from the cache or recomputing."""
    mode, _, samples, class_of_category = setting(data)
    teacher = adapted_teacher()
    (chunk,) = build_prompt_chunks(teacher.tokenizer, mode.class_names)
    preprocessor = dino_preprocessor(teacher, dino_config())
    canvas = dataset_canvas(preprocessor, [(s.height, s.width) for s in samples])
    cache = None
    if cache_folder is not None:
        cache = DinoFeatureCache(cache_folder, teacher, preprocessor, canvas, dtype=dtype, progress=False,
                                 max_gb=max_gb)
        cache.fill([s.image_path for s in samples], [chunk])
    optimizer = torch.optim.AdamW([p for p in teacher.model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    batches = [samples[i:i + 2] for i in range(0, len(samples), 2)]
    for step in range(steps):
        batch = batches[step % len(batches)]
        teacher.model.train()
        torch.manual_seed(100 + step)  # the decoder's dropout draws the same masks on every path
        if cache is not None:
            metas = cache.metas([(s.height, s.width) for s in batch])
            pixels, mask = cache.blank(len(batch)), torch.stack([m.pixel_mask() for m in metas])
        else:
            pre = preprocessor([load_rgb(s.image_path) for s in batch])
            pixels, mask, metas = pre.pixel_values, pre.pixel_mask, pre.meta
        labels = [dino_labels(sample_objects(s, class_of_category), meta, chunk) for s, meta in zip(batch, metas)]
        if cache is not None:
            with cache.replay(teacher.model, [s.image_path for s in batch]):
                loss = teacher.model(pixel_values=pixels, pixel_mask=mask, labels=labels, **chunk.encode(2)).loss
        else:
            loss = teacher.model(pixel_values=pixels, pixel_mask=mask, labels=labels, **chunk.encode(2)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses, cache, teacher, chunk


def test_the_estimate_is_the_stored_size(data: Path, tmp_path: Path) -> None:
    _, _, samples, _ = setting(data)
    teacher = load_grounding_dino("tiny")
    (chunk,) = build_prompt_chunks(teacher.tokenizer, ["cat", "dog", "pallet truck"])
    preprocessor = teacher.preprocessor()
    for canvas in [(160, 192), (171, 251), (163, 203)]:  # odd sizes: Swin pads each stage
        for dtype in (torch.float16, torch.float32):
            cache = DinoFeatureCache(tmp_path / f"{canvas}-{dtype}", teacher, preprocessor, canvas, dtype=dtype,
                                     progress=False, max_gb=None)
            cache.fill([samples[0].image_path], [chunk])
            record = cache.load(samples[0].image_path, chunk.input_ids)
            shapes = feature_level_shapes(teacher.model.config, canvas)
            assert [(h, w) for _, h, w in record["levels"]] == shapes[:3]
            assert record["vision"].shape[0] == sum(h * w for h, w in shapes)
            stored = cache.path(samples[0].image_path, chunk).stat().st_size
            assert abs(cache.estimate_bytes(1, [chunk]) - stored) < 200  # the container's bytes vary a little


def test_swin_t_at_800x1333_takes_11_mb_per_image_and_prompt() -> None:
    """The figures docs/LORA_GUIDE.md records (the shapes were checked against the real Swin-T backbone)."""
    config = GROUNDING_DINO_PRESETS["grounding_dino_swint"].build_config()
    assert feature_level_shapes(config, (800, 1333)) == [(100, 167), (50, 84), (25, 42), (13, 21)]
    assert feature_level_shapes(config, (512, 512)) == [(64, 64), (32, 32), (16, 16), (8, 8)]  # 5,440 positions
    positions = sum(h * w for h, w in feature_level_shapes(config, (800, 1333)))
    per_pair = (positions + 16) * config.d_model * 2  # float16, a 16-token prompt
    assert positions == 22_223 and math.isclose(per_pair / 1e6, 11.4, abs_tol=0.05)
    square = sum(h * w for h, w in feature_level_shapes(config, (1333, 1333)))
    assert math.isclose((square + 16) * config.d_model * 2 / 1e6, 19.0, abs_tol=0.05)


def test_past_the_budget_the_first_images_are_cached_and_training_computes_the_same(
        data: Path, tmp_path: Path, mlcore_logs: list[logging.LogRecord]) -> None:
    full, full_cache, _, chunk = train_steps(data, tmp_path / "full", max_gb=None)
    assert full_cache.over_budget == 0 and full_cache.recomputed == 0
    pair = full_cache.pair_bytes(chunk)
    mlcore_logs.clear()

    partial, cache, _, _ = train_steps(data, tmp_path / "partial", max_gb=3.5 * pair / 1e9)
    images = len(list((tmp_path / "full").glob("*.pt")))
    assert cache.stage_calls == 3 and len(list((tmp_path / "partial").glob("*.pt"))) == 3
    assert cache.over_budget == images - 3 and cache.recomputed > 0
    assert cache.stored_bytes <= cache.max_bytes
    _, _, samples, _ = setting(data)
    # The first images; the second batch holds one cached and one recomputed image.
    assert [cache.path(s.image_path, chunk).is_file() for s in samples] == [True] * 3 + [False] * (images - 3)
    # The same steps, bit for bit: a recomputed pair is what fill would have stored.
    assert partial == full

    messages = [record.getMessage() for record in mlcore_logs if "DINO feature cache" in record.getMessage()]
    assert len(messages) == 2
    assert re.match(rf"DINO feature cache: ~[\d.]+ MB for {images} images x 1 chunks \(budget [\d.]+ MB, float32",
                    messages[0])
    assert f"holds 3 more (image, prompt) pair(s); the other {images - 3} are recomputed" in messages[1]

    recomputed, _, _, _ = train_steps(data, None, max_gb=None)  # no cache at all
    assert recomputed == pytest.approx(full, rel=1e-5)


def test_float16_storage_and_evaluation_also_match_under_a_budget(data: Path, tmp_path: Path) -> None:
    full, full_cache, teacher, chunk = train_steps(data, tmp_path / "full", max_gb=None, dtype=torch.float16)
    partial, cache, partial_teacher, _ = train_steps(data, tmp_path / "partial", dtype=torch.float16,
                                                     max_gb=1.5 * full_cache.pair_bytes(chunk) / 1e9)
    assert partial == full and cache.stage_calls == 1
    mode, dataset, _, _ = setting(data)
    indices = range(len(dataset))
    want = dino_detections(teacher, dataset, indices, [chunk], len(mode.class_names), feature_cache=full_cache)
    got = dino_detections(partial_teacher, dataset, indices, [chunk], len(mode.class_names), feature_cache=cache)
    assert len(want) == len(got)
    for (index_a, a), (index_b, b) in zip(want, got):
        assert index_a == index_b and torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
    assert cache.stage_calls == 1  # evaluation's fill respected the budget too
