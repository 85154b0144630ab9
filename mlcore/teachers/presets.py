"""Teacher presets: a variant is a config builder, a weights folder name and the input size it wants.

As in segment-anything's `sam_model_registry`, each family's registry is a plain dict from the preset name (the
`model.preset` value of the teacher configs) to a `TeacherPreset`:

- `tiny`: small real architectures with seeded random weights, offline, for tests, the demo and CPU smoke runs;
- `grounding_dino_swint`, `grounding_dino_swinb`, `sam_vit_b`, `sam_vit_l`, `sam_vit_h`: the full-size
  architectures, whose pretrained weights live in `<models dir>/<folder>/` as `scripts/download_pretrained_models.sh`
  writes them (pinned Hub revisions; the loaded folder's own `preprocessor_config.json` overrides `preprocessing`).

`preset.preprocessing` is the matching section of the preprocessing config, so a caller builds the right input
pipeline with `preset.preprocessor()` (or `for_model(family, {family: preset.preprocessing})`).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    PreTrainedConfig,
    SamConfig,
    SamMaskDecoderConfig,
    SamPromptEncoderConfig,
    SamVisionConfig,
    SwinConfig,
)

from mlcore.errors import ConfigError
from mlcore.preprocess import SingleModelPreprocessor, for_model

Family = Literal["grounding_dino", "sam"]
FAMILIES: tuple[str, ...] = ("grounding_dino", "sam")

# Grounding DINO hard-codes these ids as phrase delimiters ([CLS], [SEP], '.', '?'); any vocabulary must agree.
DINO_SPECIAL_TOKEN_IDS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}
TINY_VOCAB_SIZE = 1040
TINY_SEED = 0


@dataclass(frozen=True)
class TeacherPreset:
    """One architecture variant: how to build its config, where its weights live, what input size it wants."""

    name: str
    family: Family
    build_config: Callable[[], PreTrainedConfig] = field(repr=False)
    folder: str | None  # folder under the models dir with Hugging Face weights; None: random weights only (tiny)
    hub_repository: str | None  # where download_pretrained_models.sh gets the folder from
    preprocessing: dict[str, Any]  # overrides of this family's preprocessing section (empty: the schema defaults)
    description: str
    bundled: bool = False  # weights ship with mlcore (mlcore/resources/teachers/<folder>), used when models/ lacks them
    # Teacher-config sections this preset's size calls for, applied when it is chosen with `--preset`:
    # {"lora": {...}, "training": {...}}.
    fine_tuning: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def needs_weights(self) -> bool:
        return self.folder is not None

    @property
    def image_size(self) -> int:
        """SAM: the square input side (the longest edge, padded to image_size x image_size)."""
        return int(self.preprocessor().config.longest_edge)

    @property
    def shortest_edge(self) -> int | None:
        """Grounding DINO: the short side images are resized to."""
        return self.preprocessor().config.shortest_edge

    @property
    def longest_edge(self) -> int:
        return int(self.preprocessor().config.longest_edge)

    def preprocessor(self) -> SingleModelPreprocessor:
        """The input pipeline this preset expects (tiny presets want small images)."""
        return for_model(self.family, {self.family: self.preprocessing})


def tiny_vocab() -> dict[str, int]:
    """A ~1k-token WordPiece vocabulary that spells any ASCII word from letters and '##' pieces.

    Real BERT ids for the special tokens (Grounding DINO reads them as phrase delimiters); everything else is
    characters, so class names tokenize offline without a downloaded vocabulary.
    """
    tokens = ["[PAD]", *(f"[unused{index}]" for index in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [*string.ascii_lowercase, *string.digits, *(f"##{c}" for c in string.ascii_lowercase + string.digits),
              *"!\"#$%&'()*+,-/:;<=>@[\\]^_`{|}~"]
    by_id = {token_id: token for token, token_id in DINO_SPECIAL_TOKEN_IDS.items()}
    while len(tokens) < TINY_VOCAB_SIZE:
        index = len(tokens)
        tokens.append(by_id.get(index) or (pieces.pop(0) if pieces else f"[unused{index}]"))
    vocab = {token: index for index, token in enumerate(tokens)}
    assert all(vocab[token] == token_id for token, token_id in DINO_SPECIAL_TOKEN_IDS.items())
    return vocab


def tiny_tokenizer() -> BertTokenizer:
    """Offline tokenizer for random-weight Grounding DINO models (tiny, or full-size with random_init)."""
    return BertTokenizer(vocab=tiny_vocab(), do_lower_case=True)


def _tiny_grounding_dino_config() -> GroundingDinoConfig:
    # ~1.5 M params. The backbone and text encoder are sized so that the default decoder LoRA (r=16) stays near 1 %
    # of all parameters, under the 2 % safety check, as it is for the real model. d_model must be a multiple of 32
    # (GroupNorm(32, d_model)); at least 128 px input (a 1x1 lowest level fails in GroupNorm).
    backbone = SwinConfig(image_size=224, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                          window_size=7, out_indices=[2, 3, 4], drop_path_rate=0.0)
    text = BertConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=128, max_position_embeddings=256)
    return GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                               decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                               decoder_attention_heads=2, num_queries=20, num_feature_levels=4, encoder_n_points=2,
                               decoder_n_points=2, fusion_droppath=0.0, max_text_len=256)


def _tiny_sam_config() -> SamConfig:
    # ~0.84 M params, 256 px input (16x16 embeddings, 64x64 low-res masks). Prompt encoder and mask decoder sizes
    # must agree with the vision encoder: hidden 32 = output_channels = 2 x num_pos_feats; same image/patch size.
    # The frozen encoder is wide enough that the default mask-decoder LoRA (r=8) stays under 2 % of all parameters.
    vision = SamVisionConfig(hidden_size=128, output_channels=32, num_hidden_layers=3, num_attention_heads=2,
                             image_size=256, patch_size=16, window_size=8, global_attn_indexes=[2], num_pos_feats=16,
                             mlp_dim=512)
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=8)
    decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=512, num_hidden_layers=2, num_attention_heads=2,
                                   iou_head_hidden_dim=32)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


SHAPES_DINO_LORA_TARGETS = (r".*decoder\.layers\.\d+\.((self_attn|encoder_attn_text)\.(query|key|value|out_proj)"
                            r"|encoder_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)|fc1|fc2)"
                            r"|.*decoder\.bbox_embed\.\d+\.layers\.\d+")


def _shapes_grounding_dino_config() -> GroundingDinoConfig:
    # The demo detector (`mlcore pretrain-teachers`): the tiny backbone and text encoder with a wider transformer
    # (d_model 64, 50 queries) and auxiliary loss, the config that converged fastest per CPU-minute from scratch.
    tiny = _tiny_grounding_dino_config()
    return GroundingDinoConfig(backbone_config=tiny.backbone_config, text_config=tiny.text_config, d_model=64,
                               encoder_layers=1, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                               encoder_attention_heads=4, decoder_attention_heads=4, num_queries=50,
                               num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, dropout=0.1,
                               fusion_droppath=0.0, max_text_len=256, auxiliary_loss=True)


def _shapes_sam_config() -> SamConfig:
    # The demo segmenter: 8 px patches of a 160 px input, so the 80x80 low-res masks put two pixels per cell
    # (the tiny preset's 16 px patches learn too slowly from scratch). SamVisionConfig's default initializer_range
    # is 1e-10, which leaves a from-scratch encoder's output at ~1e-21 and untrainable: use the usual 0.02.
    vision = SamVisionConfig(hidden_size=96, output_channels=32, num_hidden_layers=3, num_attention_heads=3,
                             image_size=160, patch_size=8, window_size=10, global_attn_indexes=[2],
                             num_pos_feats=16, mlp_dim=384, initializer_range=0.02)
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=160, patch_size=8, mask_input_channels=8)
    decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=256, num_hidden_layers=2, num_attention_heads=2,
                                   iou_head_hidden_dim=32)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _swin_b_grounding_dino_config() -> GroundingDinoConfig:
    # IDEA-Research/grounding-dino-base: the Swin-B (384 px, ImageNet-22k) backbone, everything else as Swin-T's
    # model. Numbers from transformers' convert_grounding_dino_to_hf.py ("base": window 12, embed 128, depths
    # 2-2-18-2, heads 4-8-16-32, image 384) and mmdetection's grounding_dino_swin-b configs.
    backbone = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                          image_size=384, out_indices=[2, 3, 4])
    return GroundingDinoConfig(backbone_config=backbone)


def _sam_config(hidden_size: int, layers: int, heads: int, global_attn: tuple[int, ...]) -> SamConfig:
    """segment-anything's ViT variants differ in four numbers; prompt encoder and decoder are shared."""
    vision = SamVisionConfig(hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
                             global_attn_indexes=list(global_attn))
    return SamConfig(vision_config=vision)


GROUNDING_DINO_PRESETS: dict[str, TeacherPreset] = {
    "tiny": TeacherPreset(
        name="tiny", family="grounding_dino", build_config=_tiny_grounding_dino_config, folder=None,
        hub_repository=None, preprocessing={"shortest_edge": 160, "longest_edge": 256},
        description="~1.5 M params, random weights, 160-256 px inputs (tests, demo)"),
    "shapes": TeacherPreset(
        name="shapes", family="grounding_dino", build_config=_shapes_grounding_dino_config,
        folder="grounding_dino_shapes", hub_repository=None,
        preprocessing={"shortest_edge": 160, "longest_edge": 256}, bundled=True,
        # Every Linear of its 2 decoder layers and the box MLPs at r=8 (1.95 %, under the 2 % check): on the demo's
        # field data +0.057 test mAP50-95 over zero-shot, against +0.034 for the default targets (both lr 3e-4,
        # 20 epochs; session 7). A small model's LoRA moves little at the full-size 1e-4.
        fine_tuning={"lora": {"r": 8, "alpha": 16, "target_modules": SHAPES_DINO_LORA_TARGETS},
                     "training": {"lr": 3e-4}},
        description="1.8 M params pretrained on generated shapes, shipped with mlcore, 160-256 px inputs (demo)"),
    "grounding_dino_swint": TeacherPreset(
        name="grounding_dino_swint", family="grounding_dino", build_config=GroundingDinoConfig,
        folder="grounding_dino_swint", hub_repository="IDEA-Research/grounding-dino-tiny", preprocessing={},
        description="Swin-T + BERT-base, 172 M params, 800-1333 px inputs"),
    "grounding_dino_swinb": TeacherPreset(
        name="grounding_dino_swinb", family="grounding_dino", build_config=_swin_b_grounding_dino_config,
        folder="grounding_dino_swinb", hub_repository="IDEA-Research/grounding-dino-base", preprocessing={},
        description="Swin-B + BERT-base, 232 M params, 800-1333 px inputs"),
}

SAM_PRESETS: dict[str, TeacherPreset] = {
    "tiny": TeacherPreset(
        name="tiny", family="sam", build_config=_tiny_sam_config, folder=None, hub_repository=None,
        preprocessing={"longest_edge": 256, "pad_to": [256, 256]},
        description="~0.84 M params, random weights, 256 px inputs (tests, demo)"),
    "shapes": TeacherPreset(
        name="shapes", family="sam", build_config=_shapes_sam_config, folder="sam_shapes", hub_repository=None,
        preprocessing={"longest_edge": 160, "pad_to": [160, 160]}, bundled=True,
        # r=8 on its 32-wide mask decoder would train 2.4 % of the model, over the 2 % safety check. LoRA on its image
        # encoder too (lora.image_encoder) measured no better on the demo's field data (test IoU 0.867 vs 0.868, lr
        # 3e-4; session 7) at twice the time: its encoder already saw textures in pretraining.
        fine_tuning={"lora": {"r": 4, "alpha": 8}, "training": {"lr": 3e-4}},
        description="0.5 M params pretrained on generated shapes, shipped with mlcore, 160 px inputs (demo)"),
    "sam_vit_b": TeacherPreset(
        name="sam_vit_b", family="sam", build_config=lambda: _sam_config(768, 12, 12, (2, 5, 8, 11)),
        folder="sam_vit_b", hub_repository="facebook/sam-vit-base", preprocessing={},
        description="ViT-B, 94 M params, 1024 px inputs"),
    "sam_vit_l": TeacherPreset(
        name="sam_vit_l", family="sam", build_config=lambda: _sam_config(1024, 24, 16, (5, 11, 17, 23)),
        folder="sam_vit_l", hub_repository="facebook/sam-vit-large", preprocessing={},
        description="ViT-L, 312 M params, 1024 px inputs"),
    "sam_vit_h": TeacherPreset(
        name="sam_vit_h", family="sam", build_config=lambda: _sam_config(1280, 32, 16, (7, 15, 23, 31)),
        folder="sam_vit_h", hub_repository="facebook/sam-vit-huge", preprocessing={},
        description="ViT-H, 641 M params, 1024 px inputs"),
}

PRESETS: dict[str, dict[str, TeacherPreset]] = {"grounding_dino": GROUNDING_DINO_PRESETS, "sam": SAM_PRESETS}


def get_preset(family: str, name: str | TeacherPreset) -> TeacherPreset:
    """The preset of a family by name; an unknown family or name is a ConfigError listing the valid ones."""
    if isinstance(name, TeacherPreset):
        return name
    if family not in PRESETS:
        raise ConfigError(f"unknown teacher family {family!r}", fix=f"use one of: {', '.join(FAMILIES)}")
    registry = PRESETS[family]
    if name not in registry:
        raise ConfigError(f"unknown {family} preset {name!r}", where="model.preset",
                          fix=f"use one of: {', '.join(registry)}")
    return registry[name]
