"""GroundedSAM: DINO's boxes become SAM's prompts, everything lands in the original frame, the mode picks teachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from PIL import Image

from mlcore.errors import ModelError
from mlcore.teachers import (
    GroundedSAM,
    TeacherPrediction,
    apply_lora_to_grounding_dino,
    apply_lora_to_sam,
    load_grounding_dino,
    load_sam,
    save_adapter,
)
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS
from tests.unit.teachers.conftest import noise_image
from tests.unit.teachers.test_lora import randomize_lora

HEIGHT, WIDTH = 150, 310  # non-square on purpose: a frame mix-up shows as out-of-bounds or stretched boxes


def teachers_dir(root: Path, class_mapping: dict[str, str]) -> Path:
    """What teacher training leaves: one adapter folder per family."""
    dino, sam = load_grounding_dino("tiny"), load_sam("tiny")
    dino.model, sam.model = apply_lora_to_grounding_dino(dino.model), apply_lora_to_sam(sam.model)
    randomize_lora(dino.model, seed=2)
    randomize_lora(sam.model, seed=3)
    save_adapter(dino, root / TEACHER_FOLDERS["grounding_dino"], class_mapping=class_mapping,
                 inference={"box_threshold": 0.0, "text_threshold": 0.0})
    save_adapter(sam, root / TEACHER_FOLDERS["sam"], class_mapping=class_mapping)
    return root


def test_sam_segments_exactly_the_boxes_dino_found_in_the_original_frame(tiny_dino, tiny_sam, tmp_path: Path) -> None:
    grounded = GroundedSAM(["cat", "dog"], grounding_dino=tiny_dino, sam=tiny_sam, box_threshold=0.0,
                           text_threshold=0.0)
    path = tmp_path / "image.png"
    Image.fromarray(noise_image(HEIGHT, WIDTH, seed=1)).save(path)
    first, second = grounded.predict([noise_image(HEIGHT, WIDTH), path], extract_features=True)
    for prediction in (first, second):
        assert isinstance(prediction, TeacherPrediction) and prediction.image_size == (HEIGHT, WIDTH)
        count = len(prediction)
        assert count > 0
        assert prediction.boxes.shape == (count, 4) and prediction.boxes.dtype == torch.float32
        assert prediction.masks.shape == (count, HEIGHT, WIDTH) and prediction.masks.dtype == torch.bool
        assert prediction.mask_scores.shape == (count,) and prediction.scores.shape == (count,)
        assert prediction.class_ids.dtype == torch.int64 and set(prediction.class_ids.tolist()) <= {0, 1}
        boxes = prediction.boxes
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= WIDTH).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= HEIGHT).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert torch.equal(prediction.scores, prediction.scores.sort(descending=True).values)
    # The boxes are DINO's kept queries mapped out of the model frame with the preprocessing geometry.
    meta = grounded.preprocessors["grounding_dino"](noise_image(HEIGHT, WIDTH)).meta
    kept = first.features["dino_kept_queries"]
    assert torch.allclose(first.boxes, meta.boxes_from_normalized_cxcywh(first.features["dino_query_boxes"][kept]))
    # Masks are SAM's answer to exactly those boxes.
    alone = GroundedSAM(["cat", "dog"], sam=tiny_sam).predict(noise_image(HEIGHT, WIDTH), boxes=[first.boxes])[0]
    assert torch.equal(alone.masks, first.masks)


def test_no_boxes_from_dino_means_no_masks(tiny_dino, tiny_sam) -> None:
    grounded = GroundedSAM(["cat", "dog"], grounding_dino=tiny_dino, sam=tiny_sam, box_threshold=1.0)
    (prediction,) = grounded.predict(noise_image(HEIGHT, WIDTH), extract_features=True)
    assert prediction.features["dino_class_scores"].max() < 1.0
    assert len(prediction) == 0
    assert prediction.boxes.shape == (0, 4) and prediction.masks.shape == (0, HEIGHT, WIDTH)


def test_features_for_distillation_have_documented_shapes(tiny_dino, tiny_sam) -> None:
    grounded = GroundedSAM(["cat", "dog", "bird"], grounding_dino=tiny_dino, sam=tiny_sam)
    (prediction,) = grounded.predict([noise_image(HEIGHT, WIDTH)], extract_features=True)
    features = prediction.features
    queries = tiny_dino.model.config.num_queries
    assert features["dino_decoder_hidden_states"].shape == (queries, 32)
    assert features["dino_query_boxes"].shape == (queries, 4) and features["dino_class_scores"].shape == (queries, 3)
    shapes = features["dino_spatial_shapes"]
    assert shapes.shape == (4, 2) and features["dino_encoder_vision"].shape == (int(shapes.prod(1).sum()), 32)
    assert features["sam_image_embeddings"].shape == (32, 16, 16)
    assert grounded.predict(noise_image(HEIGHT, WIDTH))[0].features == {}


def test_many_classes_are_split_into_several_prompts_and_all_their_queries_are_scored(tiny_dino) -> None:
    tiny_dino.model.config.max_text_len = 32  # a small budget so 10 classes need several prompts
    names = [f"class{index}" for index in range(10)]
    grounded = GroundedSAM(names, grounding_dino=tiny_dino, box_threshold=0.0, text_threshold=0.0, nms_iou=None)
    chunks = grounded.prompt_chunks(names)
    assert len(chunks) > 1 and all(len(chunk.input_ids) <= 32 for chunk in chunks)
    (prediction,) = grounded.predict(noise_image(HEIGHT, WIDTH), extract_features=True)
    scores = prediction.features["dino_class_scores"]
    assert scores.shape == (20 * len(chunks), 10)
    for index, chunk in enumerate(chunks):  # each prompt's queries score only that prompt's classes
        block = scores[20 * index:20 * (index + 1)]
        outside = [c for c in range(10) if c not in chunk.class_ids]
        assert (block[:, outside] == 0).all() and (block[:, list(chunk.class_ids)] > 0).all()
    assert len(prediction) == 20 * len(chunks) and prediction.masks is None


def test_segmentation_only_prompts_sam_with_given_boxes(tiny_sam) -> None:
    grounded = GroundedSAM(["cell"], sam=tiny_sam)
    with pytest.raises(ValueError, match="boxes="):
        grounded.predict(noise_image(HEIGHT, WIDTH))
    boxes = np.array([[10, 10, 100, 80], [150, 20, 300, 140]], dtype=np.float32)
    empty = np.zeros((0, 4), dtype=np.float32)
    first, second = grounded.predict([noise_image(HEIGHT, WIDTH), noise_image(80, 60)], boxes=[boxes, empty],
                                     class_ids=[np.array([0, 0]), np.array([], dtype=np.int64)])
    assert first.masks.shape == (2, HEIGHT, WIDTH) and first.class_ids.tolist() == [0, 0]
    assert torch.equal(first.boxes, torch.from_numpy(boxes)) and (first.scores == 1).all()
    assert second.masks.shape == (0, 80, 60)
    (unlabelled,) = grounded.predict(noise_image(HEIGHT, WIDTH), boxes=[boxes])
    assert unlabelled.class_ids.tolist() == [-1, -1]


@pytest.mark.parametrize(("mode", "families"), [("detection_only", {"grounding_dino"}), ("segmentation_only", {"sam"}),
                                                ("detection_and_segmentation", {"grounding_dino", "sam"})])
def test_from_pretrained_loads_only_the_teachers_the_mode_needs(mode: str, families: set[str], mode_configs,
                                                                tmp_path: Path) -> None:
    config = mode_configs[mode]
    grounded = GroundedSAM.from_pretrained(teachers_dir(tmp_path, config.class_mapping), config)
    assert set(grounded.teachers) == families
    assert grounded.class_names == config.class_names
    assert all(isinstance(teacher.model, PeftModel) for teacher in grounded.teachers.values())
    image = noise_image(HEIGHT, WIDTH)
    boxes = None if "grounding_dino" in families else [np.array([[5.0, 5.0, 90.0, 70.0]])]
    (prediction,) = grounded.predict(image, boxes=boxes)
    assert (prediction.masks is not None) == ("sam" in families)
    if "grounding_dino" in families:
        assert grounded.box_threshold == 0.0  # the thresholds the adapter was saved with
        assert len(prediction) > 0 and prediction.class_ids.max() < config.num_classes


def test_merged_teachers_predict_what_the_adapters_predict(mode_configs, tmp_path: Path) -> None:
    config = mode_configs["detection_and_segmentation"]
    folder = teachers_dir(tmp_path, config.class_mapping)
    plain = GroundedSAM.from_pretrained(folder, config)
    merged = GroundedSAM.from_pretrained(folder, config, use_merged=True)
    assert not any(isinstance(teacher.model, PeftModel) for teacher in merged.teachers.values())
    image = noise_image(HEIGHT, WIDTH)
    expected, actual = plain.predict(image, extract_features=True)[0], merged.predict(image, extract_features=True)[0]
    for key in ("dino_query_boxes", "dino_class_scores", "sam_image_embeddings"):
        assert torch.allclose(expected.features[key], actual.features[key], atol=1e-4), key


def test_wrong_or_missing_adapters_are_model_errors(mode_configs, tmp_path: Path) -> None:
    config = mode_configs["detection_and_segmentation"]
    folder = teachers_dir(tmp_path / "other", {"0": "zebra"})
    with pytest.raises(ModelError, match="trained on classes"):
        GroundedSAM.from_pretrained(folder, config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="needs the grounding_dino teacher"):
        GroundedSAM.from_pretrained(tmp_path / "empty", config)
    with pytest.raises(ModelError, match="needs the sam teacher"):
        GroundedSAM.from_pretrained({"grounding_dino": folder / TEACHER_FOLDERS["grounding_dino"]}, config)
