"""Grounding DINO fine-tuning trains every synonym of a class as positive, and supervises every decoder layer:
mlcore's loss equals transformers' own loss function given class-level label maps, on the same tensors."""

from __future__ import annotations

import numpy as np
import torch
from transformers.loss.loss_grounding_dino import GroundingDinoForObjectDetectionLoss
from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

from mlcore.data.objects import Objects
from mlcore.finetune.losses import configure_dino_loss, dino_labels
from mlcore.preprocess import PreprocessMeta
from mlcore.teachers import load_grounding_dino
from mlcore.teachers.prompts import build_prompt_chunks


def labelled_forward():
    teacher = load_grounding_dino("tiny")
    (chunk,) = build_prompt_chunks(teacher.tokenizer, ["cat", "dog"], {"cat": ["cat", "kitten"]})
    meta = PreprocessMeta.build((160, 160), (160, 160), (0, 0, 0, 0))
    objects = Objects(boxes=torch.tensor([[10.0, 10.0, 60.0, 80.0], [70.0, 20.0, 150.0, 90.0]]),
                      class_ids=torch.tensor([0, 1]), has_mask=np.zeros(2, dtype=bool),
                      annotation_index=np.arange(2))
    labels = [dino_labels(objects, meta, chunk)]
    pixels = torch.from_numpy(np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32))
    return teacher, chunk, labels, {"pixel_values": pixels, "pixel_mask": torch.ones(1, 160, 160, dtype=torch.long),
                                    **chunk.encode(1)}


def test_loss_uses_class_label_maps_and_equals_transformers_loss_given_them():
    teacher, chunk, labels, inputs = labelled_forward()
    settings = configure_dino_loss(teacher.model, auxiliary_loss=True)
    torch.manual_seed(0)
    outputs = teacher.model(labels=[dict(target) for target in labels], **inputs)
    assert settings["auxiliary_loss"] and any(key.endswith("_0") for key in outputs.loss_dict)  # decoder layer 0

    width = outputs.logits.shape[-1]
    class_maps = (torch.nn.functional.pad(labels[0]["class_label_maps"], (0, width - len(chunk.input_ids))),)
    plain = [{key: value for key, value in labels[0].items() if key != "class_label_maps"}]
    config = teacher.model.config
    text_mask = inputs["attention_mask"].bool()
    text_mask = torch.nn.functional.pad(text_mask, (0, width - text_mask.shape[1]))
    reference = GroundingDinoForObjectDetectionLoss(
        outputs.logits, plain, "cpu", outputs.pred_boxes, config, class_maps, text_mask,
        outputs_class=_stack(outputs, "logits"),
        outputs_coord=_stack(outputs, "pred_boxes"), encoder_logits=outputs.encoder_logits,
        encoder_pred_boxes=outputs.encoder_pred_boxes)[0]
    assert torch.allclose(outputs.loss, reference, atol=1e-5)

    phrase_maps = build_label_maps(outputs.logits, inputs["input_ids"])
    assert phrase_maps[0].shape[0] == 3  # transformers: cat, kitten, dog as three labels
    assert labels[0]["class_label_maps"].shape[0] == 2  # mlcore: cat (with kitten) and dog
    kitten = range(*chunk.phrase_spans[1])
    assert all(labels[0]["class_label_maps"][0, i] == 1 for i in kitten)


def _stack(outputs, name: str) -> torch.Tensor:
    """Every decoder layer's output, as the model stacks them for the auxiliary loss."""
    layers = [aux[name] for aux in outputs.auxiliary_outputs] + [getattr(outputs, name)]
    return torch.stack(layers)
