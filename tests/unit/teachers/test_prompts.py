"""Prompts: class names (and synonyms) become "a . b ." prompts within the token budget, and scores map back."""

from __future__ import annotations

import pytest
import torch

from mlcore.errors import ConfigError
from mlcore.preprocess import PreprocessMeta
from mlcore.teachers.grounding_dino import select_detections
from mlcore.teachers.presets import tiny_tokenizer
from mlcore.teachers.prompts import build_prompt_chunks, class_scores, phrase_scores


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def spelled(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_all_classes_share_one_prompt_with_known_token_spans(tokenizer) -> None:
    (chunk,) = build_prompt_chunks(tokenizer, ["cat", "hot dog"])
    cat, hot_dog = spelled(tokenizer, "cat"), spelled(tokenizer, "hot dog")
    assert chunk.text == "cat . hot dog ."
    assert list(chunk.input_ids) == [101, *cat, 1012, *hot_dog, 1012, 102]
    assert chunk.phrase_spans == ((1, 1 + len(cat)), (2 + len(cat), 2 + len(cat) + len(hot_dog)))
    assert chunk.phrase_classes == (0, 1)
    assert chunk.input_ids == tuple(tokenizer("cat . hot dog .")["input_ids"])  # what the processor would make
    encoded = chunk.encode(batch_size=2)
    assert encoded["input_ids"].shape == (2, len(chunk.input_ids)) and encoded["attention_mask"].all()


def test_synonyms_become_phrases_of_their_class_and_delimiters_in_names_are_removed(tokenizer) -> None:
    (chunk,) = build_prompt_chunks(tokenizer, ["car", "st. bernard"], {"car": ["car", "automobile", "sedan"]})
    assert chunk.text == "car . automobile . sedan . st bernard ."
    assert chunk.phrase_classes == (0, 0, 0, 1)
    assert chunk.label_index(0) == 0 and chunk.label_index(1) == 1  # rows of the class label maps
    assert chunk.input_ids.count(1012) == 4  # only the delimiters we put there


def test_every_synonym_of_a_class_is_positive_in_its_label_map(tokenizer) -> None:
    """transformers' build_label_maps gives one map per phrase: a car box would train 'automobile' as negative."""
    (chunk,) = build_prompt_chunks(tokenizer, ["car", "bus"], {"car": ["car", "automobile", "sedan"]})
    maps = chunk.class_label_maps(40)
    assert maps.shape == (2, 40)
    car_tokens = {i for start, end in chunk.phrase_spans[:3] for i in range(start, end)}
    bus_tokens = set(range(*chunk.phrase_spans[3]))
    assert set(maps[0].nonzero().flatten().tolist()) == car_tokens
    assert set(maps[1].nonzero().flatten().tolist()) == bus_tokens
    assert chunk.input_ids[0] == 101 and maps[:, 0].sum() == 0  # special tokens and dots are never positive


def test_prompts_split_at_the_token_budget_and_never_split_a_class(tokenizer) -> None:
    names = [f"class{index}" for index in range(40)]
    prompts = {"class7": ["class7", "seventh thing", "lucky"]}
    chunks = build_prompt_chunks(tokenizer, names, prompts, max_text_len=64)
    assert len(chunks) > 1
    assert all(len(chunk.input_ids) <= 64 for chunk in chunks)
    assert [c for chunk in chunks for c in chunk.class_ids] == list(range(40))  # each class once, in order
    (holder,) = [chunk for chunk in chunks if 7 in chunk.class_ids]
    assert holder.phrase_classes.count(7) == 3
    assert len(build_prompt_chunks(tokenizer, names[:20], prompts, max_text_len=256)) == 1  # 20 x 8 tokens fit


def test_impossible_prompts_are_config_errors(tokenizer) -> None:
    with pytest.raises(ConfigError, match="max_text_len"):
        build_prompt_chunks(tokenizer, ["a" * 10], {"a" * 10: ["a very long description " * 3]}, max_text_len=16)
    with pytest.raises(ConfigError, match="unknown classes: dog"):
        build_prompt_chunks(tokenizer, ["cat"], {"dog": ["puppy"]})
    with pytest.raises(ConfigError, match="empty prompt phrase"):
        build_prompt_chunks(tokenizer, ["cat"], {"cat": [" . "]})


def test_phrase_score_is_the_max_over_its_tokens_and_synonyms_merge_into_their_class(tokenizer) -> None:
    (chunk,) = build_prompt_chunks(tokenizer, ["car", "dog"], {"car": ["car", "automobile"]})
    (car_start, car_end), (auto_start, auto_end), (dog_start, dog_end) = chunk.phrase_spans
    logits = torch.full((1, 3, 256), -10.0)
    logits[..., len(chunk.input_ids):] = float("-inf")  # the model pads the text positions with -inf
    logits[0, 0, auto_end - 1] = 2.0  # query 0: one token of "automobile" -> class car
    logits[0, 1, dog_start] = 1.0  # query 1: dog
    logits[0, 2, car_start] = 0.5  # query 2: car weakly, automobile strongly -> car, automobile's score
    logits[0, 2, auto_start] = 3.0
    phrases = phrase_scores(logits, chunk)
    assert phrases.shape == (1, 3, 3)
    assert phrases[0, 0, 1] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    scores = class_scores(logits, chunk, num_classes=3)
    assert scores.shape == (1, 3, 3) and (scores[..., 2] == 0).all()  # class 2 is not in this prompt
    assert scores[0].argmax(-1).tolist() == [0, 1, 0]
    assert scores[0, 2, 0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_detections_are_thresholded_mapped_to_the_original_frame_and_deduplicated_per_class() -> None:
    meta = PreprocessMeta.build((100, 200), (128, 256), (0, 0, 0, 0))  # 2x model frame... and back
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.52], [0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.1],
                          [1.5, 1.5, 0.2, 0.2]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.1], [0.1, 0.6], [0.3, 0.2], [0.9, 0.0]])
    found = select_detections(boxes, scores, meta, box_threshold=0.35, text_threshold=0.25, nms_iou=0.7)
    # query 1 overlaps query 0 (same class) -> suppressed; query 2 is the other class -> kept; query 3 is too weak;
    # query 4 lies outside the image -> empty after clipping -> dropped.
    assert found.query_index.tolist() == [0, 2]
    assert found.class_ids.tolist() == [0, 1]
    assert torch.allclose(found.boxes[0], torch.tensor([50.0, 25.0, 150.0, 75.0]))
    assert found.scores.tolist() == pytest.approx([0.9, 0.6])
    without_nms = select_detections(boxes, scores, meta, box_threshold=0.35, text_threshold=0.25, nms_iou=None)
    assert without_nms.query_index.tolist() == [0, 1, 2]
    strict_text = select_detections(boxes, scores, meta, box_threshold=0.35, text_threshold=0.85, nms_iou=None)
    assert strict_text.query_index.tolist() == [0]
    best_two = select_detections(boxes, scores, meta, box_threshold=0.35, text_threshold=0.25, nms_iou=None,
                                 max_detections=2)
    assert best_two.query_index.tolist() == [0, 1]  # the two highest scores (0.9, 0.8), in score order
