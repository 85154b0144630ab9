"""The distillation loss on real (random-weight) YOLOv8 / YOLOv8-seg students at 64 px, CPU."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig, KdSegmentationOnlyConfig
from mlcore.distill.geometry import align_teacher_student_outputs, boxes_from_masks, resize_masks
from mlcore.distill.losses import DistillationLoss, feature_distillation_loss, logit_distillation_loss
from mlcore.distill.records import StudentBatch
from mlcore.errors import ConfigError, ModelError
from mlcore.preprocess import for_model

SIZE = 64
CLASSES = 3
CHANNELS = 16
CONFIGS = {"detection_only": KdDetectionOnlyConfig, "segmentation_only": KdSegmentationOnlyConfig,
           "both": KdBothConfig}


def student(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    build = SegmentationModel if kind == "segment" else DetectionModel
    model = build(f"yolov8n{'-seg' if kind == 'segment' else ''}.yaml", nc=CLASSES, verbose=False)
    return model.train()


def losses_for(kind: str, features: bool = True):
    losses = CONFIGS[kind]().losses
    losses.feature_distillation_loss.enabled = features
    losses.feature_distillation_loss.adapter_channels = CHANNELS
    return losses


def make_batch(*, masks: bool = True, soft: bool = True, features: bool = True) -> StudentBatch:
    generator = torch.Generator().manual_seed(1)
    object_masks = torch.zeros(4, SIZE, SIZE, dtype=torch.uint8)
    object_masks[0, 8:30, 4:36] = 1
    object_masks[1, 34:60, 28:62] = 1
    object_masks[2, 4:52, 18:44] = 1
    object_masks[3, 20:40, 10:50] = 1
    soft_scores = torch.tensor([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]])
    if not soft:
        soft_scores[:] = math.nan
    return StudentBatch(
        images=torch.rand(2, 3, SIZE, SIZE, generator=generator), batch_idx=torch.tensor([0, 0, 1, 1]),
        class_ids=torch.tensor([0, 1, 2, 0]), boxes=boxes_from_masks(object_masks), soft_scores=soft_scores,
        masks=object_masks.float() if masks else None,
        teacher_features=torch.randn(2, CHANNELS, 8, 8, generator=generator) if features else None,
        feature_valid=torch.ones(2, 1, 8, 8, dtype=torch.bool) if features else None)


EXPECTED = {  # (student, config) -> components that run
    ("detect", "detection_only"): {"detection", "logit", "feature"},
    ("segment", "detection_only"): {"detection", "logit", "feature"},
    ("segment", "both"): {"detection", "segmentation", "logit", "feature"},
    ("segment", "segmentation_only"): {"segmentation", "feature"},
}


@pytest.mark.parametrize(("kind", "config"), list(EXPECTED))
def test_enabled_components_are_nonzero_and_finite_and_disabled_ones_absent(kind: str, config: str) -> None:
    model = student(kind)
    criterion = DistillationLoss(model, losses_for(config), num_classes=CLASSES, teacher_channels=CHANNELS)
    breakdown = criterion(model(make_batch().images), make_batch())

    assert set(breakdown.components) == EXPECTED[kind, config]
    assert not breakdown.skipped
    for name, value in breakdown.components.items():
        assert value.dim() == 0 and torch.isfinite(value) and value.item() > 0, name
    assert torch.isfinite(breakdown.total) and breakdown.total.requires_grad
    assert breakdown.total.item() == pytest.approx(sum(v.item() for v in breakdown.components.values()), rel=1e-5)
    assert all(math.isfinite(value) for value in breakdown.terms.values())
    if config == "segmentation_only":  # no box component: the student still learns to find instances, inside seg
        assert {"segmentation/giou", "segmentation/cls", "segmentation/dfl", "segmentation/dice"} <= set(
            breakdown.terms)


@pytest.mark.parametrize("config", ["both", "segmentation_only"])
def test_a_detection_student_skips_masks_with_a_reason(config: str) -> None:
    model = student("detect")
    criterion = DistillationLoss(model, losses_for(config, features=False), num_classes=CLASSES)
    breakdown = criterion(model(make_batch().images), make_batch())

    assert "segmentation" not in breakdown.components
    assert "no mask head" in breakdown.skipped["segmentation"]
    assert torch.isfinite(breakdown.total) and breakdown.total.requires_grad


def test_missing_inputs_are_skipped_with_one_log_line_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    model = student("segment")
    criterion = DistillationLoss(model, losses_for("both"), num_classes=CLASSES, teacher_channels=CHANNELS)
    batch = make_batch(masks=False, soft=False, features=False)
    with caplog.at_level(logging.INFO, logger="mlcore"):
        for _ in range(2):
            breakdown = criterion(model(batch.images), batch)

    assert set(breakdown.components) == {"detection"}
    assert set(breakdown.skipped) == {"segmentation", "logit", "feature"}
    assert "no masks" in breakdown.skipped["segmentation"]
    assert "teacher class scores" in breakdown.skipped["logit"]
    assert "teacher features" in breakdown.skipped["feature"]
    skip_lines = [record for record in caplog.records if "skipped" in record.getMessage()]
    assert len(skip_lines) == 3


def test_a_batch_without_objects_still_gives_a_finite_loss() -> None:
    model = student("segment")
    criterion = DistillationLoss(model, losses_for("both", features=False), num_classes=CLASSES)
    batch = make_batch()
    empty = StudentBatch(images=batch.images, batch_idx=torch.zeros(0, dtype=torch.long),
                         class_ids=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4),
                         soft_scores=torch.zeros(0, CLASSES), masks=torch.zeros(0, SIZE, SIZE))
    breakdown = criterion(model(batch.images), empty)

    assert breakdown.components["detection"].item() > 0  # background anchors still learn "nothing here"
    assert breakdown.components["segmentation"].item() == 0
    assert "logit" in breakdown.skipped
    breakdown.total.backward()


def test_backward_reaches_the_student_and_the_adapters() -> None:
    model = student("segment")
    criterion = DistillationLoss(model, losses_for("both"), num_classes=CLASSES, teacher_channels=CHANNELS)
    criterion.attach(model)  # again: replaces the hooks instead of adding more
    assert sum(len(model.model[layer]._forward_hooks) for layer in (15, 18, 21)) == 3
    batch = make_batch()
    criterion(model(batch.images), batch).total.backward()

    for name in ("15", "18", "21"):
        assert criterion.adapters[name].weight.grad is not None and criterion.adapters[name].weight.grad.abs().sum() > 0
    assert model.model[0].conv.weight.grad.abs().sum() > 0  # the stem: every component's gradient passes there
    assert model.model[-1].proto.cv1.conv.weight.grad.abs().sum() > 0  # mask prototypes
    criterion.detach()
    assert sum(len(model.model[layer]._forward_hooks) for layer in (15, 18, 21)) == 0


def test_a_copied_model_does_not_feed_the_trainers_hooks() -> None:
    model = student("detect")
    criterion = DistillationLoss(model, losses_for("detection_only"), num_classes=CLASSES, teacher_channels=CHANNELS)
    ema = copy.deepcopy(model)  # what ultralytics' ModelEMA does
    with torch.no_grad():
        ema(make_batch().images)
    assert all(tap.output is None for tap in criterion._taps.values())
    with pytest.raises(RuntimeError, match="no output recorded"):  # the loss never reuses or invents features
        criterion(ema(make_batch().images), make_batch())


def test_a_few_steps_on_one_batch_lower_the_total() -> None:
    model = student("segment", seed=0)
    criterion = DistillationLoss(model, losses_for("both"), num_classes=CLASSES, teacher_channels=CHANNELS)
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=2e-3)
    batch = make_batch()
    totals = []
    for _ in range(6):
        optimizer.zero_grad()
        total = criterion(model(batch.images), batch).total
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.75 * totals[0], totals


def test_kl_is_zero_when_the_student_matches_the_teacher() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.3], [0.2, 0.6, 0.1], [1.0, 0.0, 0.5]])
    same = torch.logit(probs.clamp(1e-4, 1 - 1e-4))
    assert logit_distillation_loss(same, probs, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert logit_distillation_loss(same + 3.0, probs, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
    different = logit_distillation_loss(same.flip(-1), probs, temperature=2.0)
    assert different.item() > 0.01
    single = probs[:, :1]  # one class: a softmax is constant, the Bernoulli KL is not
    assert logit_distillation_loss(torch.logit(single.clamp(1e-4, 1 - 1e-4)), single, 4.0).item() == pytest.approx(
        0.0, abs=1e-6)
    assert logit_distillation_loss(torch.zeros(3, 1), single, 4.0).item() > 0.01


def test_feature_loss_ignores_the_teachers_scale_and_invalid_cells() -> None:
    generator = torch.Generator().manual_seed(2)
    student_features = torch.randn(2, CHANNELS, 8, 8, generator=generator)
    teacher = student_features * 50.0 + 3.0
    valid = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    valid[..., :4, :] = True
    teacher[..., 4:, :] = torch.randn(2, CHANNELS, 4, 8, generator=generator)  # only where the teacher saw nothing
    loss, per_layer = feature_distillation_loss([student_features], teacher, valid)
    assert loss.item() == pytest.approx(0.0, abs=1e-4) and len(per_layer) == 1
    unrelated, _ = feature_distillation_loss([student_features], torch.randn(2, CHANNELS, 16, 16, generator=generator))
    assert 1.0 < unrelated.item() < 3.0  # about 2 * (1 - correlation) for unrelated features


def test_channel_mismatch_is_a_config_error_naming_the_key() -> None:
    model = student("detect")
    with pytest.raises(ConfigError) as error:
        DistillationLoss(model, losses_for("detection_only"), num_classes=CLASSES, teacher_channels=CHANNELS * 2)
    message = str(error.value)
    assert "losses.feature_distillation_loss.adapter_channels" in message
    assert str(CHANNELS * 2) in message and str(CHANNELS) in message

    criterion = DistillationLoss(model, losses_for("detection_only"), num_classes=CLASSES)  # channels unknown yet
    batch = make_batch()
    batch.teacher_features = torch.randn(2, CHANNELS + 1, 8, 8)
    with pytest.raises(ConfigError, match="adapter_channels"):
        criterion(model(batch.images), batch)


def test_a_class_count_mismatch_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="classes"):
        DistillationLoss(student("detect"), losses_for("detection_only"), num_classes=CLASSES + 1)


def test_boxes_from_masks_are_tight_continuous_boxes() -> None:
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 3, 5] = True
    masks[1, 2:7, 1:11] = True
    masks[1, 9, 0] = True
    boxes = boxes_from_masks(masks)
    assert boxes.tolist() == [[5, 3, 6, 4], [0, 2, 11, 10], [0, 0, 0, 0]]
    assert boxes.dtype == torch.float32
    assert boxes_from_masks(masks.float() * 0.9).tolist() == boxes.tolist()
    assert boxes_from_masks(torch.zeros(0, 4, 4)).shape == (0, 4)


def test_resize_masks_keeps_the_covered_fraction() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :4, :2] = 1
    small = resize_masks(masks, (4, 4))
    assert small.dtype == torch.float32 and small.shape == (2, 4, 4)
    assert small[0, :2, 0].tolist() == [1.0, 1.0] and small[0, :2, 1].tolist() == [0.0, 0.0]
    assert small.sum().item() == pytest.approx(masks.float().sum().item() / 4)
    thin = torch.zeros(1, 8, 8)
    thin[0, :, 3] = 1  # one pixel wide: nearest would drop or keep it whole, area keeps half of each cell
    assert resize_masks(thin, (4, 4))[0, :, 1].tolist() == [0.5] * 4
    assert resize_masks(masks, (16, 16)).shape == (2, 16, 16)


def yolo_meta(height: int, width: int, size: int = SIZE):
    return for_model("yolo", {"yolo": {"longest_edge": size, "pad_to": [size, size]}}).plan(height, width)


def test_alignment_is_the_identity_for_the_same_letterbox() -> None:
    meta = yolo_meta(48, 64)  # 64 x 48 content, 8 px of padding top and bottom
    features = torch.randn(5, 8, 8)
    aligned, valid = align_teacher_student_outputs(features, meta, meta, (8, 8))
    assert aligned.shape == (5, 8, 8) and valid.shape == (1, 8, 8) and valid.dtype == torch.bool
    torch.testing.assert_close(aligned, features)
    assert valid[0, :, 0].tolist() == [False] + [True] * 6 + [False]


def test_alignment_moves_a_hot_cell_across_different_letterboxes() -> None:
    # A 100 x 200 image: SAM-style resize to 64 x 128 padded below to 128 x 128; YOLO letterbox to 32 x 64 centred.
    teacher_meta = for_model("sam", {"sam": {"longest_edge": 128, "pad_to": [128, 128]}}).plan(100, 200)
    student_meta = yolo_meta(100, 200)
    assert teacher_meta.pad == (0, 0, 0, 64) and student_meta.pad == (0, 16, 0, 16)
    features = torch.zeros(1, 16, 16)  # 8 px teacher cells
    features[0, 2, 5] = 1.0  # centre (44, 20) teacher px -> (68.75, 31.25) original -> (22, 26) student px
    aligned, valid = align_teacher_student_outputs(features, teacher_meta, student_meta, (16, 16))  # 4 px cells

    assert torch.nonzero(aligned[0] > 0.5).tolist() == [[6, 5]]
    assert aligned[0, 6, 5].item() == pytest.approx(1.0)
    assert aligned.sum().item() == pytest.approx(1.0)
    rows = valid[0, :, 0].tolist()  # content rows of the student are 16..48 px: cells 4..11
    assert rows == [False] * 4 + [True] * 8 + [False] * 4
