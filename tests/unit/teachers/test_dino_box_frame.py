"""Grounding DINO's boxes live in each image's valid (unpadded) region: mlcore's decoding must equal transformers' own
`post_process_grounded_object_detection` on the same tensors, for images of several sizes in one padded batch."""

from __future__ import annotations

import torch
from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

from mlcore.teachers.grounding_dino import select_detections

from .conftest import dino_inputs, noise_image

SIZES = [(240, 320), (300, 160), (128, 400)]  # height, width: each padded to the batch canvas differently


def zero_box_heads(model: torch.nn.Module) -> None:
    """Box deltas 0: every prediction is its proposal, a grid anchor in the valid-region frame the model uses."""
    heads = list(model.bbox_embed) + [model.model.encoder_output_bbox_embed]
    for head in heads:
        last = head.layers[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)


def test_decoded_boxes_equal_transformers_post_processing_on_a_mixed_size_padded_batch(tiny_dino):
    zero_box_heads(tiny_dino.model)
    images = [noise_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    batch = tiny_dino.preprocessor()(images)
    assert len({meta.input_size for meta in batch.meta}) == 1 and len({m.resized_size for m in batch.meta}) == 3
    inputs = dino_inputs(tiny_dino, images)
    with torch.no_grad():
        outputs = tiny_dino.model(**inputs)
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tiny_dino.tokenizer)
    reference = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=SIZES)
    for index, meta in enumerate(batch.meta):
        ours = meta.boxes_from_normalized_cxcywh(outputs.pred_boxes[index], clip=False)
        assert (ours - reference[index]["boxes"]).abs().max() < 1e-3
        # Proposals are anchors spread over the image itself: their centres lie inside it, none in the padding.
        centres_x, centres_y = (ours[:, 0] + ours[:, 2]) / 2, (ours[:, 1] + ours[:, 3]) / 2
        height, width = SIZES[index]
        assert centres_x.min() >= 0 and centres_x.max() <= width and centres_y.min() >= 0 and centres_y.max() <= height
        kept = select_detections(outputs.pred_boxes[index], outputs.logits[index, :, :1].sigmoid(), meta,
                                 box_threshold=0.0, text_threshold=0.0, nms_iou=None)
        clipped = reference[index]["boxes"][kept.query_index].clone()
        clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
        assert (kept.boxes - clipped).abs().max() < 1e-3
