"""Grounding DINO's frozen-stage cache: same loss as recomputing, frozen stages once per image, resume, validity."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoConvEncoder

from mlcore.config.schemas.teachers import GroundingDinoLora, TeacherGroundingDinoLoraConfig
from mlcore.config.schemas.training import CheckpointConfig
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.objects import sample_objects
from mlcore.finetune.dino_cache import DinoFeatureCache
from mlcore.finetune.dino_frozen import dataset_canvas, keep_frozen_stages_in_eval, trainable_outside_decoder
from mlcore.finetune.inputs import dino_preprocessor
from mlcore.finetune.losses import dino_labels
from mlcore.finetune.trainer import TeacherTrainer
from mlcore.preprocess import load_rgb
from mlcore.teachers import apply_lora_to_grounding_dino, build_prompt_chunks, load_grounding_dino
from tests.unit.finetune.test_trainer import Stop, fast_dynamics, prepared, stop_at

WIDE_LORA = (r".*(decoder|encoder)\.layers\.\d+\.(self_attn|encoder_attn_text|text_enhancer_layer\.self_attn)"
             r"\.(query|key|value|out_proj)")


def counting_backbone(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Input (height, width) of every Swin backbone call, in any model of this test."""
    shapes: list[tuple[int, int]] = []
    original = GroundingDinoConvEncoder.forward

    def counted(self, pixel_values, pixel_mask):
        shapes.extend([tuple(pixel_values.shape[-2:])] * pixel_values.shape[0])
        return original(self, pixel_values, pixel_mask)

    monkeypatch.setattr(GroundingDinoConvEncoder, "forward", counted)
    return shapes


def dino_config(**overrides) -> TeacherGroundingDinoLoraConfig:
    settings = {"model": {"preset": "tiny"}, "training": {"epochs": 2, "batch_size": 2}}
    return TeacherGroundingDinoLoraConfig.model_validate({**settings, **overrides})


def trainer(data: Path, output: Path, config: TeacherGroundingDinoLoraConfig, **options) -> TeacherTrainer:
    return TeacherTrainer(output, ModeConfig.read(data), train=data / "train.json", val=data / "val.json",
                          grounding_dino=config, dynamics=fast_dynamics(), progress=False, **options)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float16, 1e-2)])
def test_loss_and_gradients_from_the_cache_equal_recomputing(tmp_path: Path, dtype: torch.dtype,
                                                             tolerance: float) -> None:
    data = prepared(tmp_path, "detection_only")
    mode = ModeConfig.read(data)
    dataset = CocoDataset(data / "train.json", mode.images_root)
    teacher = load_grounding_dino("tiny")
    teacher.model = apply_lora_to_grounding_dino(teacher.model)
    with torch.no_grad():  # LoRA starts as a no-op; give it weights so its gradients are not trivially zero
        for name, parameter in teacher.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    keep_frozen_stages_in_eval(teacher.model)
    (chunk,) = build_prompt_chunks(teacher.tokenizer, mode.class_names)
    preprocessor = dino_preprocessor(teacher, dino_config())
    samples = [dataset[0], dataset[1]]
    canvas = dataset_canvas(preprocessor, [(s.height, s.width) for s in samples])
    class_of_category = {int(cid): int(index) for index, cid in mode.category_ids.items()}
    objects = [sample_objects(sample, class_of_category) for sample in samples]

    def loss_and_grads(cached: bool) -> tuple[float, list[torch.Tensor]]:
        teacher.model.train()
        teacher.model.zero_grad()
        torch.manual_seed(0)  # the decoder's and LoRA's dropout draw the same masks on both paths
        if cached:
            metas = cache.metas([(s.height, s.width) for s in samples])
            pixels, mask = cache.blank(2), torch.stack([m.pixel_mask() for m in metas])
        else:
            batch = preprocessor([load_rgb(s.image_path) for s in samples])
            pixels, mask, metas = batch.pixel_values, batch.pixel_mask, batch.meta
        labels = [dino_labels(o, meta, chunk) for o, meta in zip(objects, metas)]
        if cached:
            with cache.replay(teacher.model, [s.image_path for s in samples]):
                loss = teacher.model(pixel_values=pixels, pixel_mask=mask, labels=labels, **chunk.encode(2)).loss
        else:
            loss = teacher.model(pixel_values=pixels, pixel_mask=mask, labels=labels, **chunk.encode(2)).loss
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in teacher.model.parameters() if p.requires_grad]

    cache = DinoFeatureCache(tmp_path / "cache", teacher, preprocessor, canvas, dtype=dtype, progress=False)
    assert cache.fill([s.image_path for s in samples], [chunk]) == 2
    want, want_grads = loss_and_grads(cached=False)
    got, got_grads = loss_and_grads(cached=True)
    # float32: the same values up to summation order (the cache ran the stages one image at a time, the recomputing
    # path two at once). float16 rounds the stored features at ~1e-3 relative, which the decoder carries into the loss.
    print(f"{dtype}: cached {got!r} recomputed {want!r}")
    assert got == pytest.approx(want, rel=tolerance)
    scale = max(float(g.abs().max()) for g in want_grads)
    assert all(torch.allclose(a, b, rtol=tolerance, atol=tolerance * scale) for a, b in zip(want_grads, got_grads))


def test_frozen_stages_run_once_per_image_and_a_resumed_run_matches(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = prepared(tmp_path, "detection_only")
    train_images = len(json.loads((data / "train.json").read_text())["images"])
    val_images = len(json.loads((data / "val.json").read_text())["images"])
    shapes = counting_backbone(monkeypatch)
    every_step = CheckpointConfig(save_every_n_steps=1)
    config = dino_config(frozen_features_dtype="float32")
    straight = trainer(data, tmp_path / "straight", config, checkpointing=every_step).run()
    # Two epochs, validation each epoch and the forgetting check: the Swin ran once per (image, prompt chunk): the
    # class prompt on every image, the control prompt on the val images.
    assert len(shapes) == train_images + val_images + val_images
    assert straight.runs["grounding_dino"].timings["frozen_stage_runs"] == train_images + val_images

    shapes.clear()
    steps_per_epoch = -(-train_images // 2)
    with pytest.raises(Stop):
        trainer(data, tmp_path / "killed", config, checkpointing=every_step,
                on_step=stop_at("grounding_dino", steps_per_epoch + 1)).run()
    assert len(shapes) == train_images + val_images
    shapes.clear()
    resumed = trainer(data, tmp_path / "killed", config, checkpointing=every_step, resume=True).run()
    assert len(shapes) == val_images  # only the control prompt's pairs, never reached before the kill
    assert resumed.runs["grounding_dino"].resumed_from is not None
    want = load_file(str(straight.runs["grounding_dino"].adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(resumed.runs["grounding_dino"].adapter_dir / "adapter_model.safetensors"))
    assert want.keys() == got.keys() and all(torch.allclose(want[k], got[k], atol=1e-6, rtol=0) for k in want)

    # The same run recomputing the frozen stages every step trains the same adapter (float32 cache: exact inputs).
    recomputed = trainer(data, tmp_path / "recomputed", dino_config(cache_frozen_features=False)).run()
    last = [torch.load(run / "checkpoints" / "grounding_dino" / "epoch-0001.pt", weights_only=True)["model"]
            for run in (tmp_path / "straight", tmp_path / "recomputed")]
    assert all(torch.allclose(last[0][k], last[1][k], atol=1e-5, rtol=0) for k in last[0])
    assert [e["train_loss"] for e in recomputed.runs["grounding_dino"].epochs] == pytest.approx(
        [e["train_loss"] for e in straight.runs["grounding_dino"].epochs], rel=1e-5)


def test_lora_outside_the_decoder_turns_the_cache_off_with_one_log_line(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    teacher = load_grounding_dino("tiny")
    assert trainable_outside_decoder(apply_lora_to_grounding_dino(teacher.model)) == []
    wide = apply_lora_to_grounding_dino(load_grounding_dino("tiny").model, GroundingDinoLora(target_modules=WIDE_LORA))
    assert any(".encoder." in name for name in trainable_outside_decoder(wide))

    data = prepared(tmp_path, "detection_only")
    config = dino_config(training={"epochs": 1, "batch_size": 2},
                         lora={"target_modules": WIDE_LORA, "max_trainable_fraction": 0.5})
    with caplog.at_level(logging.INFO, logger="mlcore"):
        run = trainer(data, tmp_path / "run", config).run().runs["grounding_dino"]
    assert "frozen_stage_runs" not in run.timings
    assert not (tmp_path / "run" / "cache" / "grounding_dino_features").exists()
    assert len([r for r in caplog.records if "cache_frozen_features is off" in r.getMessage()]) == 1


@pytest.mark.parametrize("cached", [True, False])
def test_the_configured_sizes_drive_training_and_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            cached: bool) -> None:
    data = prepared(tmp_path, "detection_only")  # 192 x 160 images; the tiny preset would make them 192 x 160
    shapes = counting_backbone(monkeypatch)
    config = dino_config(training={"epochs": 1, "batch_size": 2, "shortest_edge": 128, "longest_edge": 200},
                         cache_frozen_features=cached)
    trainer(data, tmp_path / "run", config).run()
    assert shapes and set(shapes) == {(128, 153)}  # 160 -> 128 short side, 192 -> 153.6 long side


def test_the_configured_disk_budget_reaches_the_trainers_cache(tmp_path: Path) -> None:
    """cache.max_gb in the teacher config limits what training caches; the rest is recomputed with the same loss."""
    data = prepared(tmp_path, "detection_only")
    tiny_budget = dino_config(frozen_features_dtype="float32", cache={"max_gb": 1e-6},
                              training={"epochs": 1, "batch_size": 2})
    limited = trainer(data, tmp_path / "limited", tiny_budget).run().runs["grounding_dino"]
    unlimited = trainer(data, tmp_path / "unlimited", dino_config(
        frozen_features_dtype="float32", training={"epochs": 1, "batch_size": 2})).run().runs["grounding_dino"]
    assert limited.timings["cache_over_budget"] > 0 and unlimited.timings["cache_over_budget"] == 0
    assert limited.epochs[0]["train_loss"] == pytest.approx(unlimited.epochs[0]["train_loss"], rel=1e-5)
