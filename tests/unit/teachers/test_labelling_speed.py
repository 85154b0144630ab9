"""Labelling speed-ups that must not change the labels: the backbone shared by prompt chunks, and autocast precision."""

from __future__ import annotations

import pytest
import torch

from mlcore.errors import ConfigError
from mlcore.teachers import autocast as autocast_module
from mlcore.teachers.autocast import CPU_BF16_MIN_PARAMETERS, labelling_dtype
from mlcore.teachers.grounded_sam import GroundedSAM
from mlcore.teachers.grounding_dino import run_queries
from mlcore.teachers.prompts import class_scores
from tests.unit.teachers.conftest import noise_image

NAMES = [f"class{index}" for index in range(10)]


def several_chunks(teacher) -> GroundedSAM:
    teacher.model.config.max_text_len = 32  # a small budget so 10 classes need several prompts
    return GroundedSAM(NAMES, grounding_dino=teacher, box_threshold=0.0, text_threshold=0.0, nms_iou=None)


def test_the_backbone_runs_once_for_all_prompt_chunks_and_the_queries_are_transformers_own(tiny_dino) -> None:
    grounded = several_chunks(tiny_dino)
    chunks = grounded.prompt_chunks(NAMES)
    assert len(chunks) >= 3
    batch = grounded.preprocessors["grounding_dino"]([noise_image(96, 128), noise_image(64, 160, seed=1)])
    calls = []
    handle = tiny_dino.model.model.backbone.conv_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            queries = run_queries(tiny_dino.model, batch.pixel_values, batch.pixel_mask, chunks, len(NAMES))
            calls_shared = len(calls)
            # the reference: transformers' plain forward, everything recomputed for each chunk
            reference = [tiny_dino.model(pixel_values=batch.pixel_values, pixel_mask=batch.pixel_mask,
                                         **chunk.encode(2, batch.pixel_values.device)) for chunk in chunks]
    finally:
        handle.remove()
    assert calls_shared == 1 and len(calls) == 1 + len(chunks)
    torch.testing.assert_close(queries.boxes, torch.cat([output.pred_boxes for output in reference], 1))
    expected_scores = [class_scores(output.logits, chunk, len(NAMES)) for output, chunk in zip(reference, chunks)]
    torch.testing.assert_close(queries.class_scores, torch.cat(expected_scores, 1))
    assert "forward" not in vars(tiny_dino.model.model.backbone)  # the module's own forward again afterwards


def test_bf16_queries_come_back_in_fp32_and_close_to_fp32(tiny_dino) -> None:
    grounded = several_chunks(tiny_dino)
    chunks = grounded.prompt_chunks(NAMES)
    batch = grounded.preprocessors["grounding_dino"]([noise_image(96, 128)])
    with torch.no_grad():
        fp32 = run_queries(tiny_dino.model, batch.pixel_values, batch.pixel_mask, chunks, len(NAMES))
        bf16 = run_queries(tiny_dino.model, batch.pixel_values, batch.pixel_mask, chunks, len(NAMES),
                           autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert bf16.boxes.dtype == bf16.class_scores.dtype == bf16.encoder_vision.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: the encoder memory within a few percent, not bit-equal
    error = (bf16.encoder_vision - fp32.encoder_vision).norm() / fp32.encoder_vision.norm()
    assert 0 < error < 0.05
    # two-stage selection keeps the top-scoring proposals, so near-ties may swap a few queries: compare as sets
    distance = (fp32.boxes[0][:, None] - bf16.boxes[0][None]).abs().amax(-1).amin(1)
    assert (distance < 0.01).float().mean() >= 0.8


def test_grounded_sam_labels_in_bf16_and_masks_stay_boolean(tiny_dino, tiny_sam) -> None:
    grounded = GroundedSAM(["cat", "dog"], grounding_dino=tiny_dino, sam=tiny_sam, box_threshold=0.0,
                           text_threshold=0.0, max_detections=5, precision="bf16")
    assert grounded.dtypes == {"grounding_dino": torch.bfloat16, "sam": torch.bfloat16}
    (prediction,) = grounded.predict(noise_image(96, 128), extract_features=True)
    assert len(prediction) == 5 and prediction.masks.dtype == torch.bool and prediction.masks.shape[1:] == (96, 128)
    assert prediction.boxes.dtype == torch.float32 and prediction.features["sam_image_embeddings"].dtype == torch.float32


@pytest.mark.parametrize(("precision", "parameters", "native", "expected"), [
    ("fp32", 10 ** 9, True, None),
    ("bf16", 1000, False, torch.bfloat16),  # asked for explicitly: honoured
    ("fp16", 10 ** 9, True, None),  # CPU fp16 is slower than fp32
    ("auto", CPU_BF16_MIN_PARAMETERS, True, torch.bfloat16),
    ("auto", CPU_BF16_MIN_PARAMETERS - 1, True, None),  # small models: overhead-bound, bf16 only adds casts
    ("auto", 10 ** 9, False, None),  # no native bf16: emulated is slower than fp32
])
def test_auto_precision_on_cpu(monkeypatch, precision, parameters, native, expected) -> None:
    monkeypatch.setattr(autocast_module, "cpu_has_native_bf16", lambda: native)
    assert labelling_dtype(precision, "cpu", parameters) is expected


def test_an_unknown_precision_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="auto, fp32, bf16, fp16"):
        labelling_dtype("int8", "cpu", 1)
