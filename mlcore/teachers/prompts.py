"""Grounding DINO text prompts: class names (and synonyms) packed into "cat . dog ." prompts, and scores mapped back.

Grounding DINO scores every (query, text token) pair. We build the token ids ourselves, phrase by phrase, so we know
exactly which token positions belong to which phrase and which class: a phrase's score is the max over its tokens of
sigmoid(logit), a class's score is the max over its phrases (synonyms merge into their class). Prompts longer than
the model's `max_text_len` (256) are split into several prompts, never splitting one class's phrases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from mlcore.errors import ConfigError
from mlcore.teachers.presets import DINO_SPECIAL_TOKEN_IDS

CLS_ID, SEP_ID, DOT_ID = (DINO_SPECIAL_TOKEN_IDS[token] for token in ("[CLS]", "[SEP]", "."))
# '.' and '?' end a phrase for Grounding DINO; inside a class name they would split it in two.
_DELIMITERS = re.compile(r"[.?]")


@dataclass(frozen=True)
class PromptChunk:
    """One text prompt: its token ids and, per phrase, the token span [start, end) and the class it stands for."""

    text: str
    input_ids: tuple[int, ...]
    phrase_spans: tuple[tuple[int, int], ...]
    phrase_classes: tuple[int, ...]

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(self.phrase_classes))

    def label_index(self, class_id: int) -> int:
        """The `class_labels` value of a ground-truth box of this class: its row in `class_label_maps`."""
        try:
            return self.class_ids.index(class_id)
        except ValueError:
            raise KeyError(f"class {class_id} is not in this prompt ({self.text!r})") from None

    def class_label_maps(self, length: int | None = None) -> torch.Tensor:
        """(classes in this chunk, length) 0/1: which tokens a box of each class should light up.

        Every token of every phrase of the class is positive. transformers' own `build_label_maps` makes one map per
        phrase, so with synonyms (`car: [car, automobile]`) a car box would train "automobile" as a negative, while
        inference scores a class by its best phrase.
        """
        maps = torch.zeros((len(self.class_ids), length or len(self.input_ids)), dtype=torch.long)
        for (start, end), class_id in zip(self.phrase_spans, self.phrase_classes):
            maps[self.class_ids.index(class_id), start:end] = 1
        return maps

    def encode(self, batch_size: int = 1, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask and token_type_ids for a batch that shares this prompt."""
        ids = torch.tensor(self.input_ids, dtype=torch.long, device=device).expand(batch_size, -1).contiguous()
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def class_phrases(class_names: Sequence[str], class_prompts: Mapping[str, Sequence[str]] | None = None
                  ) -> list[list[str]]:
    """Per class, its prompt phrases: the synonyms from class_prompts, else the class name itself."""
    prompts = dict(class_prompts or {})
    unknown = sorted(set(prompts) - set(class_names))
    if unknown:
        raise ConfigError(f"class_prompts names unknown classes: {', '.join(unknown)}", where="class_prompts",
                          fix=f"use the dataset's class names: {', '.join(class_names)}")
    phrases = []
    for name in class_names:
        cleaned = [_clean(phrase) for phrase in prompts.get(name) or [name]]
        if not all(cleaned):
            raise ConfigError(f"class {name!r} has an empty prompt phrase", where=f"class_prompts.{name}",
                              fix="give every class at least one phrase with letters or digits")
        phrases.append(list(dict.fromkeys(cleaned)))
    return phrases


def build_prompt_chunks(tokenizer, class_names: Sequence[str], class_prompts: Mapping[str, Sequence[str]] | None = None,
                        max_text_len: int = 256) -> list[PromptChunk]:
    """Pack all classes' phrases into as few prompts as fit `max_text_len` tokens ([CLS] ... [SEP] included)."""
    if not class_names:
        raise ConfigError("no classes to prompt Grounding DINO with", where="class_mapping",
                          fix="run `mlcore validate` so the mode config lists the dataset's classes")
    groups = []  # per class: [(phrase, token ids), ...] and its token cost
    for class_id, phrases in enumerate(class_phrases(class_names, class_prompts)):
        tokenized = [(phrase, list(tokenizer(phrase, add_special_tokens=False)["input_ids"])) for phrase in phrases]
        if any(not ids for _, ids in tokenized):
            raise ConfigError(f"a prompt phrase of class {class_names[class_id]!r} has no tokens",
                              where="class_prompts", fix="use words the tokenizer knows (letters or digits)")
        cost = sum(len(ids) + 1 for _, ids in tokenized)  # each phrase is followed by ' .'
        if cost + 2 > max_text_len:
            raise ConfigError(f"the prompt phrases of class {class_names[class_id]!r} need {cost + 2} tokens, more "
                              f"than Grounding DINO's max_text_len {max_text_len}", where="class_prompts",
                              fix="use fewer or shorter synonyms for this class")
        groups.append((class_id, tokenized, cost))
    chunks, current, used = [], [], 2
    for group in groups:
        if current and used + group[2] > max_text_len:
            chunks.append(_chunk(current))
            current, used = [], 2
        current.append(group)
        used += group[2]
    chunks.append(_chunk(current))
    return chunks


def phrase_scores(logits: torch.Tensor, chunk: PromptChunk) -> torch.Tensor:
    """(..., T) token logits -> (..., P) phrase scores: max over each phrase's tokens of sigmoid(logit)."""
    probabilities = logits.sigmoid()  # padded text positions are -inf -> 0
    return torch.stack([probabilities[..., start:end].amax(-1) for start, end in chunk.phrase_spans], dim=-1)


def class_scores(logits: torch.Tensor, chunk: PromptChunk, num_classes: int) -> torch.Tensor:
    """(..., T) token logits -> (..., num_classes) class scores, the max over each class's phrases (synonyms merge).

    Classes that are not in this chunk score 0.
    """
    phrases = phrase_scores(logits, chunk)
    index = torch.tensor(chunk.phrase_classes, device=logits.device).expand_as(phrases)
    out = phrases.new_zeros((*phrases.shape[:-1], num_classes))
    return out.scatter_reduce(-1, index, phrases, reduce="amax", include_self=True)


def _clean(phrase: str) -> str:
    return " ".join(_DELIMITERS.sub(" ", phrase).split())


def _chunk(groups: list[tuple[int, list[tuple[str, list[int]]], int]]) -> PromptChunk:
    ids, spans, classes, texts = [CLS_ID], [], [], []
    for class_id, tokenized, _ in groups:
        for phrase, phrase_ids in tokenized:
            spans.append((len(ids), len(ids) + len(phrase_ids)))
            classes.append(class_id)
            texts.append(phrase)
            ids.extend([*phrase_ids, DOT_ID])
    ids.append(SEP_ID)
    return PromptChunk(text=" . ".join(texts) + " .", input_ids=tuple(ids), phrase_spans=tuple(spans),
                       phrase_classes=tuple(classes))
