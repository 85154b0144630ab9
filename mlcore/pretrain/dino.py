"""Train a small Grounding DINO from scratch, all parameters, on the studio shapes: the demo's zero-shot detector.

The model is transformers' own `GroundingDinoForObjectDetection`, saved as a Hugging Face folder, so it loads through
the same code path as `IDEA-Research/grounding-dino-tiny`. Three things make it learn on a CPU in an hour
(measured, see ENGINEERING.md): transformers' two-stage encoder loss is made to reach the proposal head
(`train_proposal_head`), the shape words are single tokens, and the backgrounds vary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import BertTokenizer, GroundingDinoForObjectDetection

from mlcore.data.shapes_world import SHAPES, Domain, Scene
from mlcore.evaluation.coco_map import coco_map
from mlcore.preprocess import SingleModelPreprocessor, for_model
from mlcore.pretrain.scenes import training_scenes
from mlcore.teachers.presets import GROUNDING_DINO_PRESETS, tiny_vocab
from mlcore.teachers.prompts import PromptChunk, build_prompt_chunks, class_scores

PRESET = GROUNDING_DINO_PRESETS["shapes"]
PREPROCESSING = PRESET.preprocessing
# Colour words are single tokens too, so prompts such as "red circle" read as two words, not ten letters.
WORDS: tuple[str, ...] = (*SHAPES, "red", "green", "blue", "yellow", "orange", "purple", "pink", "shape", "object")


def shapes_tokenizer(words: Sequence[str] = WORDS) -> BertTokenizer:
    """The tiny letter vocabulary with `[unusedN]` entries renamed to whole words: each shape name is one token."""
    vocab = tiny_vocab()
    unused = [token for token in vocab if token.startswith("[unused")]
    renamed = dict(zip(unused, words))
    ordered = sorted(vocab, key=vocab.get)
    return BertTokenizer(vocab={renamed.get(token, token): index for index, token in enumerate(ordered)},
                         do_lower_case=True)


def train_proposal_head(detector: GroundingDinoForObjectDetection) -> torch.utils.hooks.RemovableHandle:
    """Let the two-stage encoder loss train the proposal head.

    transformers computes `encoder_pred_boxes` from detached top-k coordinates and `encoder_logits` on the learned
    query embeddings, so `enc_output`, `enc_output_norm` and `encoder_output_bbox_embed` get no gradient and query
    selection stays random from scratch. This forward hook replaces both with the undetached top-k outputs of the
    encoder's own heads, as Open-GroundingDino computes them. Inference is unchanged.
    """

    def hook(_module: nn.Module, _args, output):
        if output.enc_outputs_class is None:
            return output
        topk = torch.topk(output.enc_outputs_class.max(-1)[0], detector.config.num_queries, dim=1)[1]
        output.encoder_logits = torch.gather(
            output.enc_outputs_class, 1, topk[..., None].expand(-1, -1, output.enc_outputs_class.shape[-1]))
        output.encoder_pred_boxes = torch.gather(output.enc_outputs_coord_logits, 1,
                                                 topk[..., None].expand(-1, -1, 4)).sigmoid()
        return output

    return detector.model.register_forward_hook(hook)


@dataclass(frozen=True)
class DinoBatch:
    pixel_values: torch.Tensor
    text: dict[str, torch.Tensor]
    labels: list[dict[str, torch.Tensor]]


def scene_batch(scenes: Sequence[Scene], chunk: PromptChunk, class_names: Sequence[str],
                preprocessor: SingleModelPreprocessor) -> DinoBatch:
    """Scenes -> model inputs and transformers' labels (phrase index, cx cy w h over the image); objects whose
    class is not in the prompt are left unlabelled, so the model learns to answer only what it is asked."""
    prepared = preprocessor([scene.image for scene in scenes])
    labels = []
    for scene in scenes:
        height, width = scene.image.shape[:2]
        keep = [i for i, name in enumerate(scene.names) if class_names.index(name) in chunk.class_ids]
        boxes = torch.from_numpy(scene.boxes[keep]).reshape(-1, 4)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        xyxy = boxes / scale
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        classes = [chunk.label_index(class_names.index(scene.names[i])) for i in keep]
        labels.append({"class_labels": torch.tensor(classes, dtype=torch.long), "boxes": cxcywh.clamp(0, 1)})
    return DinoBatch(prepared.pixel_values, chunk.encode(len(scenes)), labels)


def random_prompt(rng: np.random.Generator, tokenizer, class_names: Sequence[str]) -> PromptChunk:
    """All classes in a random order; one time in three, one to three of them left out."""
    order = [class_names[i] for i in rng.permutation(len(class_names))]
    if rng.random() < 1 / 3:
        order = order[:len(order) - int(rng.integers(1, 4))]
    chunk = build_prompt_chunks(tokenizer, order)[0]
    # build_prompt_chunks numbers classes by their position in `order`; map them back to the fixed class list.
    return PromptChunk(text=chunk.text, input_ids=chunk.input_ids, phrase_spans=chunk.phrase_spans,
                       phrase_classes=tuple(class_names.index(order[c]) for c in chunk.phrase_classes))


@torch.inference_mode()
def evaluate_dino(model: GroundingDinoForObjectDetection, tokenizer, scenes: Sequence[Scene],
                  class_names: Sequence[str] = SHAPES, batch_size: int = 8, top_k: int = 100) -> dict[str, float]:
    """Box mAP (pycocotools) of the model on scenes, prompted with all classes; the top_k (query, class) pairs
    per image are its detections."""
    was_training = model.training
    model.eval()
    preprocessor = for_model("grounding_dino", {"grounding_dino": PREPROCESSING})
    chunk = build_prompt_chunks(tokenizer, list(class_names))[0]
    images, annotations, results = [], [], []
    for start in range(0, len(scenes), batch_size):
        part = scenes[start:start + batch_size]
        prepared = preprocessor([scene.image for scene in part])
        outputs = model(pixel_values=prepared.pixel_values, pixel_mask=prepared.pixel_mask, **chunk.encode(len(part)))
        scores = class_scores(outputs.logits, chunk, len(class_names))
        for offset, (scene, meta) in enumerate(zip(part, prepared.meta)):
            image_id = start + offset + 1
            height, width = scene.image.shape[:2]
            images.append({"id": image_id, "width": width, "height": height})
            for box, name in zip(scene.boxes, scene.names):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0,
                                    "category_id": class_names.index(name) + 1,
                                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                             float(box[3] - box[1])], "area": float(scene.masks[0].size)})
            xyxy = meta.boxes_from_normalized_cxcywh(outputs.pred_boxes[offset].float())
            flat = scores[offset].flatten()
            best = flat.topk(min(top_k, flat.numel()))
            for score, index in zip(best.values.tolist(), best.indices.tolist()):
                query, class_id = divmod(index, len(class_names))
                x1, y1, x2, y2 = xyxy[query].tolist()
                results.append({"image_id": image_id, "category_id": class_id + 1, "score": score,
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})
    for annotation in annotations:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    truth = {"images": images, "annotations": annotations,
             "categories": [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]}
    model.train(was_training)
    return coco_map(truth, results, list(range(1, len(class_names) + 1)))


def dino_step_inputs(seed: int, step: int, batch_size: int, tokenizer, preprocessor: SingleModelPreprocessor,
                     domain: Domain = "studio") -> DinoBatch:
    rng = np.random.default_rng([seed, step, 1])
    chunk = random_prompt(rng, tokenizer, SHAPES)
    return scene_batch(training_scenes(seed, step, batch_size, domain), chunk, SHAPES, preprocessor)


def dino_loss(model: GroundingDinoForObjectDetection, batch: DinoBatch) -> torch.Tensor:
    outputs = model(pixel_values=batch.pixel_values, pixel_mask=torch.ones_like(batch.pixel_values[:, 0]).long(),
                    labels=batch.labels, **batch.text)
    return outputs.loss
