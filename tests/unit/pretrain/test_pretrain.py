"""The demo teachers' pretraining: the proposal-head fix, resumable deterministic runs, and the Hugging Face folder
it writes loading through the same preset / weights-folder path as a downloaded checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GroundingDinoForObjectDetection

from mlcore.data.shapes_world import draw_scene
from mlcore.errors import ModelError
from mlcore.finetune.setup import teacher_configs
from mlcore.preprocess import for_model
from mlcore.pretrain import dino, recipes, sam
from mlcore.pretrain.export import SOURCE_REPO, SUMS_FILE, copy_teacher_folder
from mlcore.pretrain.runner import PretrainSpec
from mlcore.pretrain.scenes import held_out, training_scenes
from mlcore.teachers import load_grounding_dino, load_sam
from mlcore.teachers.presets import get_preset
from mlcore.teachers.weights import resolve_weights_folder

SHORT = PretrainSpec(steps=4, lr=5e-4, warmup=2, batch_size=2, seed=3, eval_every=4, save_every=2)


def _proposal_head_gradient(fixed: bool) -> float:
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(dino.PRESET.build_config())
    hook = dino.train_proposal_head(model) if fixed else None
    preprocessor = for_model("grounding_dino", {"grounding_dino": dino.PREPROCESSING})
    model.train()
    dino.dino_loss(model, dino.dino_step_inputs(0, 0, 2, dino.shapes_tokenizer(), preprocessor)).backward()
    if hook is not None:
        hook.remove()
    grads = [p.grad for p in model.model.encoder_output_bbox_embed.parameters()]
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_the_two_stage_proposal_head_learns_only_with_the_fix():
    # transformers detaches the encoder's top-k boxes: without the hook the proposal box head gets no gradient.
    assert _proposal_head_gradient(fixed=False) == 0.0
    assert _proposal_head_gradient(fixed=True) > 0.0


def test_shape_words_are_single_tokens():
    tokenizer = dino.shapes_tokenizer()
    for word in dino.WORDS:
        assert tokenizer.tokenize(word) == [word]
    assert tokenizer.tokenize("dog") == ["d", "##o", "##g"]  # other words still spell out


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    unbroken = recipes.pretrain_sam(tmp_path / "unbroken", (SHORT,), eval_images=2)

    # Kill after step 3 (the checkpoint of step 2 is on disk), then resume.
    original = sam.sam_step_loss

    def dies_at_step_3(model, seed, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return original(model, seed, step, *args)

    with monkeypatch.context() as patch:
        patch.setattr(sam, "sam_step_loss", dies_at_step_3)
        with pytest.raises(KeyboardInterrupt):
            recipes.pretrain_sam(tmp_path / "resumed", (SHORT,), eval_images=2)
    resumed = recipes.pretrain_sam(tmp_path / "resumed", (SHORT,), eval_images=2)

    for (name, a), (_, b) in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [entry["step"] for entry in resumed.history] == [4]
    assert {"studio_mask_iou", "field_mask_iou", "studio_box_fill_iou"} <= set(resumed.history[0])


def test_a_run_with_another_recipe_refuses_the_checkpoint(tmp_path: Path):
    recipes.pretrain_sam(tmp_path, (replace(SHORT, steps=2, eval_every=2),), eval_images=1)
    with pytest.raises(ValueError, match="another recipe"):  # the finished stage's folder
        recipes.pretrain_sam(tmp_path, (SHORT,), eval_images=1)
    shutil.rmtree(tmp_path / "stage1-studio" / "teacher")
    with pytest.raises(ValueError, match="another run"):  # its checkpoint
        recipes.pretrain_sam(tmp_path, (SHORT,), eval_images=1)


def test_the_sam_encoder_learns_in_pretraining():
    # transformers' get_image_embeddings() runs under no_grad: a loss through it leaves the encoder at its init.
    model = sam.new_shapes_sam(seed=0)
    sam.sam_step_loss(model, 0, 0, 2, sam.sam_preprocessor()).backward()
    grads = [p.grad for p in model.vision_encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_each_stage_starts_from_the_previous_stages_stored_weights(tmp_path: Path):
    stages = (replace(SHORT, steps=2, eval_every=2), replace(SHORT, steps=2, eval_every=2, domain="varied"))
    trained = recipes.pretrain_sam(tmp_path / "work", stages, eval_images=1)
    first = tmp_path / "work" / "stage1-studio" / "teacher"
    assert trained.folder == tmp_path / "work" / "stage2-varied" / "teacher"
    source = json.loads((trained.folder / "SOURCE.json").read_text())
    assert [stage["recipe"]["domain"] for stage in source["stages"]] == ["studio", "varied"]
    assert source["stages"][0]["weights_sha256"] == hashlib.sha256((first / "model.safetensors").read_bytes()
                                                                   ).hexdigest()
    assert source["recipe"]["domain"] == "varied" and source["metrics"]["step"] == 2

    # The second stage began from the first's fp16-stored weights: rerun it alone from that folder.
    shutil.rmtree(trained.folder.parent)
    again = recipes.pretrain_sam(tmp_path / "work", stages, eval_images=1)
    for (name, a), (_, b) in zip(trained.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_varied_batches_share_one_size_that_changes_between_steps():
    sizes = set()
    for step in range(12):
        batch = training_scenes(0, step, 3, "varied")
        assert len({scene.image.shape for scene in batch}) == 1
        sizes.add(batch[0].image.shape)
    assert len(sizes) > 2


def test_the_written_folder_loads_like_a_downloaded_checkpoint(tmp_path: Path):
    spec = replace(SHORT, steps=2, eval_every=2)
    trained = recipes.pretrain_grounding_dino(tmp_path / "work", (spec,), eval_images=2)
    folder = copy_teacher_folder(trained.folder, tmp_path / "models" / "grounding_dino_shapes")
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "SOURCE.json",
            SUMS_FILE} <= {path.name for path in folder.iterdir()}

    teacher = load_grounding_dino("shapes", tmp_path / "models")
    assert Path(teacher.weights) == folder
    assert teacher.base.repo == SOURCE_REPO and not teacher.random_init
    assert teacher.checkpoint_preprocessing == {}  # its preprocessor_config.json agrees with the preset
    assert all(p.dtype == torch.float32 for p in teacher.model.parameters())  # stored fp16, computed fp32
    assert teacher.tokenizer.tokenize("circle") == ["circle"]
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source["seed"] == 3 and source["recipe"]["steps"] == 2 and source["metrics"]["step"] == 2
    assert source["weights_sha256"] == teacher.base.weights_sha256

    loaded = teacher.model.state_dict()
    for name, value in trained.model.state_dict().items():  # what the run returns is what the folder holds
        assert torch.equal(loaded[name], value), name


def test_both_teachers_take_a_preset_named_in_both_families():
    dino_config, sam_config = teacher_configs(preset="shapes")
    assert (dino_config.model.preset, sam_config.model.preset) == ("shapes", "shapes")
    assert (sam_config.lora.r, dino_config.lora.r) == (4, 8)  # small models: ranks that keep LoRA a small share
    assert "encoder_attn" in dino_config.lora.target_modules  # the decoder's image cross-attention too
    assert dino_config.training.lr == sam_config.training.lr == 3e-4


# -- the weights shipped in the repository -------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["grounding_dino", "sam"])
def test_shipped_teachers_match_their_recorded_hashes(family: str, tmp_path: Path):
    folder = resolve_weights_folder(get_preset(family, "shapes"), tmp_path / "empty-models-dir")
    for line in (folder / SUMS_FILE).read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    source = json.loads((folder / "SOURCE.json").read_text())
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == source["weights_sha256"]


def test_the_shipped_detector_finds_named_shapes():
    teacher = load_grounding_dino("shapes")
    metrics = dino.evaluate_dino(teacher.model, teacher.tokenizer, held_out("studio", 30, seed=11))
    assert metrics["map50"] >= 0.4, metrics


def test_the_shipped_segmenter_beats_filling_the_box():
    teacher = load_sam("shapes")
    metrics = sam.evaluate_sam(teacher.model, held_out("studio", 20, seed=11))
    assert metrics["mask_iou"] >= metrics["box_fill_iou"] + 0.1, metrics


def test_a_missing_bundled_folder_names_the_rebuild_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("mlcore.teachers.weights.BUNDLED_MODELS_DIR", tmp_path / "nothing")
    with pytest.raises(ModelError, match="pretrain-teachers"):
        resolve_weights_folder(get_preset("sam", "shapes"), tmp_path / "models")


def test_field_masks_are_what_stays_visible_and_boxes_are_tight_to_them():
    rng = np.random.default_rng(0)
    for _ in range(40):
        scene = draw_scene(rng, "field", (192, 160))
        assert not (scene.masks.sum(0) > 1).any()  # a hidden part belongs to the shape in front only
        for mask, box in zip(scene.masks, scene.boxes):
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box.tolist()


def test_the_shapes_segmenter_starts_from_a_trainable_init():
    model = sam.new_shapes_sam(seed=0)
    # SamVisionConfig's default initializer_range (1e-10) makes a from-scratch encoder output ~1e-21: no signal.
    embeddings = model.get_image_embeddings(torch.randn(1, 3, sam.IMAGE_SIZE, sam.IMAGE_SIZE))
    assert embeddings.std() > 0.1
    # segment-anything's Fourier features (scale 1), not transformers' hidden_size / 2, so box corners are readable
    frequencies = model.prompt_encoder.shared_embedding.positional_embedding
    assert frequencies is model.shared_image_embedding.positional_embedding
    assert 0.5 < float(frequencies.std()) < 2.0
