"""Teacher labels are computed once per image and kept on disk; ground truth and teacher labels combine by rule."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.data.coco_dataset import Sample
from mlcore.data.mode_config import ModeConfig
from mlcore.distill.label_cache import decode_masks, encode_masks
from mlcore.distill.records import SOURCE_GROUND_TRUTH, SOURCE_TEACHER, ImageTargets
from mlcore.distill.targets import (LabelRequest, TeacherOutput, TeacherTargetCache, combine_targets,
                                    find_unlabeled_images, ground_truth_targets)
from mlcore.errors import DatasetError, ModelError
from mlcore.teachers import (GroundedSAM, apply_lora_to_grounding_dino, apply_lora_to_sam, load_grounding_dino,
                             load_sam, save_adapter)
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS

HEIGHT, WIDTH = 96, 128


def _randomize_lora(model: torch.nn.Module, seed: int) -> None:
    """LoRA starts as a no-op (B = 0); random weights make adapters differ, in outputs and in checksum."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def make_teachers_dir(root: Path, class_mapping: dict[str, str], seed: int = 1) -> Path:
    """What teacher training leaves: one adapter folder per family (tiny, random weights)."""
    dino, sam = load_grounding_dino("tiny"), load_sam("tiny")
    dino.model, sam.model = apply_lora_to_grounding_dino(dino.model), apply_lora_to_sam(sam.model)
    _randomize_lora(dino.model, seed)
    _randomize_lora(sam.model, seed + 1)
    save_adapter(dino, root / TEACHER_FOLDERS["grounding_dino"], class_mapping=class_mapping)
    save_adapter(sam, root / TEACHER_FOLDERS["sam"], class_mapping=class_mapping)
    return root


def write_image(path: Path, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def mode_configs(mode_config_paths: dict[str, Path]) -> dict[str, ModeConfig]:
    return {mode: ModeConfig.read(path) for mode, path in mode_config_paths.items()}


@pytest.fixture(scope="module")
def teachers_dir(tmp_path_factory: pytest.TempPathFactory, mode_configs: dict[str, ModeConfig]) -> Path:
    return make_teachers_dir(tmp_path_factory.mktemp("teachers"), mode_configs["detection_and_segmentation"]
                             .class_mapping)


def grounded(teachers_dir: Path, mode_configs: dict[str, ModeConfig], mode: str = "detection_and_segmentation",
             **thresholds: float) -> GroundedSAM:
    """Random tiny teachers score low: thresholds 0 so they detect something."""
    settings = {"box_threshold": 0.0, "text_threshold": 0.0, **thresholds}
    return GroundedSAM.from_pretrained(teachers_dir, mode_configs[mode], **settings)


def count_calls(teachers: GroundedSAM, monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> list[int]:
    """Wrap predict: record how many images each call got; raise KeyboardInterrupt once `fail_after` were done."""
    calls: list[int] = []
    original = teachers.predict

    def predict(images, *args, **kwargs):
        if fail_after is not None and sum(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        calls.append(len(images))
        return original(images, *args, **kwargs)

    monkeypatch.setattr(teachers, "predict", predict)
    return calls


# -- the cache ------------------------------------------------------------------------------------------------------

def test_each_image_is_labelled_once_across_gets_and_new_cache_objects(teachers_dir, mode_configs, tmp_path,
                                                                       monkeypatch) -> None:
    teachers = grounded(teachers_dir, mode_configs)
    calls = count_calls(teachers, monkeypatch)
    images = [write_image(tmp_path / f"img{index}.png", seed=index) for index in range(3)]
    cache = TeacherTargetCache(tmp_path / "cache", teachers, batch_size=2, progress=False)
    assert cache.can_label_without_boxes
    assert cache.fill(images + [images[0]]) == 3  # duplicates label once
    assert sum(calls) == 3 and cache.teacher_calls == 3 and len(list((tmp_path / "cache").glob("*.npz"))) == 3
    first = cache.get(images[0])
    assert cache.fill(images) == 0
    again = TeacherTargetCache(tmp_path / "cache", teachers, progress=False)  # e.g. after a restart
    second = again.get(images[0])
    assert again.fill(images) == 0 and again.teacher_calls == 0 and sum(calls) == 3
    for name in ("boxes", "scores", "class_ids", "class_scores", "masks", "mask_scores"):
        assert np.array_equal(getattr(first, name), getattr(second, name), equal_nan=True), name

    # What is stored is exactly what the teachers said (masks through RLE included).
    (expected,) = GroundedSAM.predict(teachers, [np.asarray(Image.open(images[0]))], extract_features=True)
    assert isinstance(first, TeacherOutput) and len(first) == len(expected) > 0
    assert first.image_size == (HEIGHT, WIDTH) and first.features is None and first.feature_meta is None
    assert np.allclose(first.boxes, expected.boxes.numpy()) and np.allclose(first.scores, expected.scores.numpy())
    assert np.array_equal(first.class_ids, expected.class_ids.numpy())
    features = expected.features
    kept_scores = features["dino_class_scores"][features["dino_kept_queries"]].numpy()
    assert first.class_scores.shape == (len(first), 3) and np.allclose(first.class_scores, kept_scores)
    assert first.masks.dtype == np.uint8 and np.array_equal(first.masks.astype(bool), expected.masks.numpy())
    assert np.allclose(first.mask_scores, expected.mask_scores.numpy())


def test_a_changed_threshold_or_adapter_labels_again(teachers_dir, mode_configs, tmp_path, monkeypatch) -> None:
    image = write_image(tmp_path / "image.png")
    folder = tmp_path / "cache"
    teachers = grounded(teachers_dir, mode_configs, "detection_only")
    calls = count_calls(teachers, monkeypatch)
    cache = TeacherTargetCache(folder, teachers, progress=False)
    loose = cache.get(image)
    threshold = float(np.median(loose.scores))
    teachers.box_threshold = threshold
    strict = cache.get(image)
    assert sum(calls) == 2 and len(list(folder.glob("*.npz"))) == 2
    assert (strict.scores >= threshold).all() and len(strict) < len(loose)
    teachers.box_threshold = 0.0
    cache.get(image)
    assert sum(calls) == 2  # back to the first settings: their file is still there
    teachers.dtypes = {"grounding_dino": torch.bfloat16}
    cache.get(image)
    assert sum(calls) == 3  # labels made in another precision are other labels
    teachers.dtypes = {"grounding_dino": None}

    other_dir = make_teachers_dir(tmp_path / "retrained", mode_configs["detection_only"].class_mapping, seed=7)
    retrained = grounded(other_dir, mode_configs, "detection_only")
    old, new = teachers.grounding_dino.adapter.adapter_sha256, retrained.grounding_dino.adapter.adapter_sha256
    assert old != new
    retrained_calls = count_calls(retrained, monkeypatch)
    TeacherTargetCache(folder, retrained, progress=False).get(image)
    assert sum(retrained_calls) == 1 and len(list(folder.glob("*.npz"))) == 4


def test_masks_round_trip_through_rle_exactly() -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((4, 37, 53)) > 0.5).astype(np.uint8)
    masks[1] = 0
    masks[2] = 1
    counts, lengths = encode_masks(masks)
    assert counts.dtype == np.uint8 and lengths.shape == (4,)
    assert np.array_equal(decode_masks(counts, lengths, (37, 53)), masks)
    assert decode_masks(*encode_masks(np.zeros((0, 37, 53), np.uint8)), (37, 53)).shape == (0, 37, 53)


@pytest.mark.parametrize("source", ["grounding_dino", "sam"])
def test_features_are_stored_over_each_images_own_canvas(source, teachers_dir, mode_configs, tmp_path) -> None:
    teachers = grounded(teachers_dir, mode_configs)
    small, wide = write_image(tmp_path / "small.png"), write_image(tmp_path / "wide.png", 150, 310, seed=1)
    cache = TeacherTargetCache(tmp_path / "cache", teachers, feature_source=source, batch_size=4, progress=False)
    cache.fill([small, wide])  # one batch would pad the small image to the wide one's canvas: grouped instead
    preprocessor = teachers.preprocessors[source]
    for path, (height, width) in ((small, (HEIGHT, WIDTH)), (wide, (150, 310))):
        output = cache.get(path)
        meta = preprocessor.plan(height, width)
        assert output.feature_meta == json.loads(json.dumps(meta.to_dict()))
        assert output.features.dtype == np.float16
        if source == "sam":
            assert output.features.shape == (32, 16, 16)  # tiny SAM: 256 px square input, stride 16
        else:
            channels, height16, width16 = output.features.shape  # the stride-16 level of the image's own canvas
            assert channels == 32
            assert abs(height16 - meta.input_size[0] / 16) < 1 and abs(width16 - meta.input_size[1] / 16) < 1
    # The stored map is the teacher's own feature, reshaped: compare with a run on the image alone.
    (alone,) = teachers.predict([np.asarray(Image.open(small))], extract_features=True)
    output = cache.get(small)
    if source == "sam":
        expected = alone.features["sam_image_embeddings"]
    else:
        shapes = alone.features["dino_spatial_shapes"].tolist()
        level = next(i for i, (h, _) in enumerate(shapes) if h == output.features.shape[1])
        start = sum(h * w for h, w in shapes[:level])
        h, w = shapes[level]
        expected = alone.features["dino_encoder_vision"][start:start + h * w].reshape(h, w, -1).permute(2, 0, 1)
    assert torch.allclose(torch.from_numpy(output.features).float(), expected.half().float(), atol=1e-3)


def test_segmentation_only_labels_from_ground_truth_boxes(teachers_dir, mode_configs, tmp_path, monkeypatch) -> None:
    teachers = grounded(teachers_dir, mode_configs, "segmentation_only")
    assert set(teachers.teachers) == {"sam"}
    calls = count_calls(teachers, monkeypatch)
    image = write_image(tmp_path / "image.png")
    cache = TeacherTargetCache(tmp_path / "cache", teachers, progress=False)
    assert not cache.can_label_without_boxes
    with pytest.raises(ModelError, match="prompt boxes") as error:
        cache.get(image)
    assert error.value.where == str(image) and "ground-truth boxes" in error.value.fix
    with pytest.raises(ModelError):
        cache.fill([image])
    assert not calls

    boxes, class_ids = np.array([[5, 5, 60, 50], [40, 30, 120, 90]], np.float32), np.array([2, 0])
    output = cache.get(image, boxes=boxes, class_ids=class_ids)
    assert np.array_equal(output.boxes, boxes) and output.class_ids.tolist() == [2, 0]
    assert output.masks.shape == (2, HEIGHT, WIDTH) and output.mask_scores.shape == (2,)
    assert output.class_scores.shape == (2, 3) and np.isnan(output.class_scores).all()
    assert cache.fill([LabelRequest(image, boxes, class_ids)]) == 0 and sum(calls) == 1
    cache.get(image, boxes=boxes[:1], class_ids=class_ids[:1])  # other prompts: other labels
    assert sum(calls) == 2


def test_an_interrupted_fill_keeps_finished_images_and_resumes_with_the_rest(teachers_dir, mode_configs, tmp_path,
                                                                             monkeypatch) -> None:
    teachers = grounded(teachers_dir, mode_configs, "detection_only")
    images = [write_image(tmp_path / "images" / f"{index}.png", seed=index) for index in range(5)]
    folder = tmp_path / "cache"
    count_calls(teachers, monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        TeacherTargetCache(folder, teachers, batch_size=1, progress=False).fill(images)
    files = sorted(folder.iterdir())
    assert len(files) == 2 and all(path.suffix == ".npz" for path in files)  # no half-written leftovers
    monkeypatch.undo()
    calls = count_calls(teachers, monkeypatch)
    resumed = TeacherTargetCache(folder, teachers, batch_size=1, progress=False)
    assert resumed.fill(images) == 3 and sum(calls) == 3 and resumed.teacher_calls == 3
    assert all(len(resumed.get(path).boxes) for path in images) and sum(calls) == 3


# -- ground truth and the combination rules --------------------------------------------------------------------------

def _polygon(x1: float, y1: float, x2: float, y2: float) -> msgspec.Raw:
    return msgspec.Raw(json.dumps([[x1, y1, x2, y1, x2, y2, x1, y2]]).encode())


def test_ground_truth_targets_drop_crowds_and_unknown_categories(tmp_path) -> None:
    sample = Sample(image_id=1, image_path=tmp_path / "a.png", width=40, height=30,
                    boxes=np.array([[2, 2, 10, 10], [0, 0, 40, 30], [20, 5, 8, 8], [1, 1, 5, 5]], np.float32),
                    category_ids=np.array([7, 7, 9, 4]), iscrowd=np.array([False, True, False, False]),
                    _segmentations=(_polygon(2, 2, 12, 12), _polygon(0, 0, 40, 30), msgspec.Raw(b"[]"),
                                    _polygon(1, 1, 6, 6)))
    targets = ground_truth_targets(sample, {7: 0, 9: 1}, num_classes=2, with_masks=True)
    assert targets.boxes.tolist() == [[2, 2, 12, 12], [20, 5, 28, 13]] and targets.class_ids.tolist() == [0, 1]
    assert targets.source.tolist() == [SOURCE_GROUND_TRUTH] * 2 and np.isnan(targets.soft_scores).all()
    assert targets.masks.shape == (2, 30, 40) and targets.masks[0].any() and not targets.masks[1].any()
    assert ground_truth_targets(sample, {7: 0, 9: 1}, 2, with_masks=False).masks is None


SIZE = (40, 60)


def _mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SIZE, np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def _ground_truth(with_masks: bool = True) -> ImageTargets:
    """Two annotations: a car (class 0) with its mask, and a person (class 1) without one."""
    return ImageTargets(boxes=np.array([[0, 0, 20, 20], [30, 10, 50, 30]], np.float32), class_ids=np.array([0, 1]),
                        soft_scores=np.full((2, 2), np.nan, np.float32), source=np.zeros(2, np.uint8),
                        masks=np.stack([_mask(2, 2, 18, 18), np.zeros(SIZE, np.uint8)]) if with_masks else None)


def _teacher(**changes) -> TeacherOutput:
    """The car again (IoU 0.81), a person box with the wrong class, a new dog (class 1), and a faint detection."""
    fields = dict(boxes=np.array([[0, 0, 18, 18], [31, 10, 50, 30], [22, 22, 28, 38], [40, 0, 58, 8]], np.float32),
                  scores=np.array([0.9, 0.8, 0.6, 0.1], np.float32), class_ids=np.array([0, 0, 1, 1]),
                  class_scores=np.array([[0.9, 0.1], [0.8, 0.3], [0.2, 0.6], [0.05, 0.1]], np.float32),
                  image_size=SIZE, masks=np.stack([_mask(1, 1, 17, 17), _mask(32, 12, 48, 28), _mask(23, 23, 27, 37),
                                                    _mask(41, 1, 57, 7)]),
                  mask_scores=np.ones(4, np.float32), features=np.ones((4, 3, 5), np.float16),
                  feature_meta={"input_size": [48, 80]})
    return TeacherOutput(**{**fields, **changes})


def combine(ground_truth, teacher, rule, **settings) -> ImageTargets:
    options = {"union_iou_threshold": 0.5, "score_threshold": 0.3, "num_classes": 2, "with_masks": True, **settings}
    return combine_targets(ground_truth, teacher, rule=rule, **options)


def test_prefer_ground_truth_keeps_annotations_and_borrows_the_matching_teachers_scores() -> None:
    targets = combine(_ground_truth(), _teacher(), "prefer_ground_truth")
    assert targets.boxes.tolist() == _ground_truth().boxes.tolist() and targets.class_ids.tolist() == [0, 1]
    assert targets.source.tolist() == [SOURCE_GROUND_TRUTH] * 2
    assert np.allclose(targets.soft_scores[0], [0.9, 0.1])  # matched: same class, IoU >= 0.5
    assert np.isnan(targets.soft_scores[1]).all()  # the overlapping teacher box has another class
    assert np.array_equal(targets.masks[0], _mask(2, 2, 18, 18))  # its own mask wins over the teacher's
    assert np.array_equal(targets.masks[1], _mask(30, 10, 50, 30))  # no mask, no match: its filled box
    assert targets.features is not None and targets.feature_meta == {"input_size": [48, 80]}

    person_teacher = _teacher(class_ids=np.array([0, 1, 1, 1]))
    targets = combine(_ground_truth(), person_teacher, "prefer_ground_truth")
    assert np.allclose(targets.soft_scores[1], [0.8, 0.3])
    assert np.array_equal(targets.masks[1], _mask(32, 12, 48, 28))  # missing mask: the matched teacher's

    unannotated = combine(None, _teacher(), "prefer_ground_truth")
    assert unannotated.boxes.tolist() == _teacher().boxes[:3].tolist()  # 0.1 < score_threshold
    assert unannotated.source.tolist() == [SOURCE_TEACHER] * 3 and np.allclose(unannotated.soft_scores,
                                                                              _teacher().class_scores[:3])
    assert np.array_equal(unannotated.masks, _teacher().masks[:3])

    negative = ImageTargets(boxes=np.zeros((0, 4), np.float32), class_ids=np.zeros(0, np.int64),
                            soft_scores=np.zeros((0, 2), np.float32), source=np.zeros(0, np.uint8),
                            masks=np.zeros((0, *SIZE), np.uint8))
    assert len(combine(negative, _teacher(), "prefer_ground_truth")) == 0  # an annotated empty image stays empty


def test_teacher_only_ignores_annotations_and_applies_the_score_threshold() -> None:
    targets = combine(_ground_truth(), _teacher(), "teacher_only", score_threshold=0.7)
    assert targets.boxes.tolist() == _teacher().boxes[:2].tolist() and targets.class_ids.tolist() == [0, 0]
    assert targets.source.tolist() == [SOURCE_TEACHER] * 2
    assert len(combine(None, _teacher(), "teacher_only", score_threshold=0.0)) == 4
    with pytest.raises(ValueError, match="teacher_only"):
        combine(_ground_truth(), None, "teacher_only")


def test_union_adds_only_teacher_boxes_that_overlap_no_annotation() -> None:
    targets = combine(_ground_truth(), _teacher(), "union")
    # the car (IoU 0.81) and the wrong-class person (IoU 0.95) are duplicates; the faint box is under threshold
    assert targets.boxes.tolist() == _ground_truth().boxes.tolist() + [[22, 22, 28, 38]]
    assert targets.source.tolist() == [SOURCE_GROUND_TRUTH, SOURCE_GROUND_TRUTH, SOURCE_TEACHER]
    assert np.allclose(targets.soft_scores[2], [0.2, 0.6]) and np.allclose(targets.soft_scores[0], [0.9, 0.1])
    assert targets.masks.shape == (3, *SIZE) and np.array_equal(targets.masks[2], _mask(23, 23, 27, 37))
    strict = combine(_ground_truth(), _teacher(), "union", union_iou_threshold=0.9)
    assert len(strict) == 4  # now the car at IoU 0.81 counts as a separate object; the person at 0.95 does not
    without_teacher = combine(_ground_truth(with_masks=False), None, "union", with_masks=False)
    assert len(without_teacher) == 2 and without_teacher.masks is None and without_teacher.features is None


# -- unlabeled images ------------------------------------------------------------------------------------------------

def test_find_unlabeled_images_lists_images_recursively_and_sorted(tmp_path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as error:
        find_unlabeled_images(tmp_path / "missing")
    assert error.value.where == str(tmp_path / "missing") and error.value.fix
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no images"):
        find_unlabeled_images(tmp_path)
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg", ".hidden/d.png", "sub/.e.png"):
        write_image(tmp_path / name, 8, 8)
    assert find_unlabeled_images(tmp_path) == [tmp_path / "a.PNG", tmp_path / "b.jpg", tmp_path / "sub" / "c.jpeg"]
