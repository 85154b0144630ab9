"""Teacher training on demo data with the tiny presets (CPU, seconds per run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mlcore.teachers.sam as sam_module
from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig
from mlcore.config.schemas.training import CheckpointConfig, TrainingDynamicsConfig
from mlcore.data.demo import make_demo_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.prepare import prepare_dataset
from mlcore.errors import ConfigError, DatasetError, ModelError
from mlcore.finetune.setup import teacher_configs, train_teachers
from mlcore.finetune.trainer import TeacherTrainer
from mlcore.teachers import GroundedSAM
from mlcore.training.run_setup import resolve_mode
from tests.unit.relocated import relocate_splits

DEMO_MODE = {"detection_only": "boxes", "segmentation_only": "masks", "detection_and_segmentation": "both"}
REPO = Path(__file__).resolve().parents[3]


def fast_dynamics() -> TrainingDynamicsConfig:
    return TrainingDynamicsConfig(scheduler="constant", warmup_epochs=0.0, seed=3)


def prepared(root: Path, mode: str, num_images: int = 6) -> Path:
    """Demo data validated and split; returns the folder holding train.json, val.json and .mode_config.json."""
    source = make_demo_dataset(root / "demo", mode=DEMO_MODE[mode], num_images=num_images, negatives=1,
                               image_size=(192, 160), seed=0)
    report = prepare_dataset(source, output_dir=root / "prepared", split="train:0.75,val:0.25", progress=False)
    assert report.usable and report.annotation_mode == mode
    return root / "prepared"


def train(data: Path, output: Path, **options):
    settings = {"preset": "tiny", "device": "cpu", "epochs": 2, "batch_size": 2, "dynamics": fast_dynamics(),
                "progress": False}
    return train_teachers(data / "train.json", data / "val.json", output, **{**settings, **options})


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


class Stop(Exception):
    """Stands in for a killed process."""


def stop_at(family: str, step: int):
    def callback(current: str, global_step: int) -> None:
        if current == family and global_step == step:
            raise Stop

    return callback


@pytest.fixture(scope="module")
def both_run(tmp_path_factory: pytest.TempPathFactory):
    """Both teachers, 3 epochs at a high learning rate without clipping, so the loss visibly moves."""
    root = tmp_path_factory.mktemp("both")
    data = prepared(root, "detection_and_segmentation")
    dino, sam = teacher_configs(preset="tiny", epochs=3, batch_size=2)
    for config in (dino, sam):
        config.training.lr, config.training.max_grad_norm = 3e-3, None
    trainer = TeacherTrainer(root / "run", ModeConfig.read(data), train=data / "train.json", val=data / "val.json",
                             grounding_dino=dino, sam=sam, dynamics=fast_dynamics(), progress=False)
    return trainer.run(), data


def test_short_training_lowers_the_loss_of_both_teachers(both_run) -> None:
    result, _ = both_run
    assert set(result.runs) == {"grounding_dino", "sam"}
    for family, run in result.runs.items():
        losses = [epoch["train_loss"] for epoch in run.epochs]
        assert len(losses) == 3
        assert losses[-1] < losses[0], (family, losses)


def test_metrics_json_has_the_documented_fields(both_run) -> None:
    result, _ = both_run
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["mode"] == "detection_and_segmentation" and metrics["device"] == "cpu"
    dino, sam = metrics["teachers"]["grounding_dino"], metrics["teachers"]["sam"]
    for entry, metric in ((dino, "map50_95"), (sam, "mean_iou")):
        assert entry["best"]["metric"] == metric and entry["best"]["epoch"] in (0, 1, 2)
        assert [epoch["epoch"] for epoch in entry["epochs"]] == [0, 1, 2]
        assert all({"train_loss", metric, "epoch_seconds"} <= set(epoch) for epoch in entry["epochs"])
        assert entry["lora"]["trainable"] > 0 and entry["lora"]["ratio"] < entry["lora"]["max_trainable_fraction"]
        assert {"train_seconds", "eval_seconds", "total_seconds"} <= set(entry["timings"])
        assert Path(entry["adapter"]).is_dir() and entry["preset"] == "tiny"
    assert dino["loss"]["auxiliary_loss"] is True and "every phrase" in dino["loss"]["label_maps"]
    assert "map50" in dino["epochs"][0] and sam["timings"]["images_encoded"] > 0
    for entry, metric in ((dino, "map50_95"), (sam, "mean_iou")):  # the base model's scores, and the gain over them
        assert set(entry["before_fine_tuning"]) == set(entry["epochs"][0]) - {"epoch", "train_loss", "epoch_seconds"}
        assert entry["gain"] == pytest.approx(entry["best"]["value"] - entry["before_fine_tuning"][metric])
    assert (result.output_dir / "tensorboard" / "grounding_dino").is_dir()
    classes = set(ModeConfig.read(both_run[1]).class_names)
    for entry, metric in ((dino, "ap50_95"), (sam, "mean_iou")):  # per-class before/after, and the forgetting check
        assert entry["per_class"]["metric"] == metric and set(entry["per_class"]["classes"]) <= classes
        assert all(set(row) == {"before", "after", "change"} for row in entry["per_class"]["classes"].values())
        assert set(entry["forgetting"]["untrained_classes"]) == {"metric", "classes", "mean_change"}
    control = dino["forgetting"]["control_prompts"]
    assert control["metric"] == "map50_against_base" and control["prompts"] and control["images"] > 0
    assert "control_prompts" not in sam["forgetting"]


def test_adapters_load_into_grounded_sam_and_predict(both_run) -> None:
    result, data = both_run
    mode = ModeConfig.read(data)
    labeller = GroundedSAM.from_pretrained(result.output_dir, mode, box_threshold=0.0, text_threshold=0.0)
    image = next((data.parent / "demo" / "images").glob("*.jpg"))
    prediction = labeller.predict(image)[0]
    assert prediction.masks is not None and prediction.masks.shape[0] == len(prediction)
    assert len(prediction) > 0


def test_the_adapter_holds_the_best_epoch(both_run) -> None:
    result, _ = both_run
    for family, run in result.runs.items():
        best = torch.load(result.output_dir / "checkpoints" / family / "best.pt", weights_only=True)["model"]
        saved = adapter_weights(run.adapter_dir)
        assert saved
        for key, value in saved.items():  # PEFT drops the adapter name ("default") from the saved keys
            state_key = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(
                ".lora_B.weight", ".lora_B.default.weight")
            assert torch.equal(value, best[state_key]), key


@pytest.mark.parametrize(("mode", "written", "absent"), [
    ("detection_only", "grounding_dino_lora", "sam_lora"),
    ("segmentation_only", "sam_lora", "grounding_dino_lora"),
])
def test_only_the_teachers_the_mode_needs_are_trained(tmp_path: Path, mode: str, written: str, absent: str) -> None:
    data = prepared(tmp_path, mode)
    result = train(data, tmp_path / "run", epochs=1)
    assert (tmp_path / "run" / written / "mlcore_adapter.json").is_file()
    assert not (tmp_path / "run" / absent).exists()
    assert list(json.loads(result.metrics_path.read_text())["teachers"]) == [written.removesuffix("_lora")]


def counting_encoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = sam_module.image_embeddings

    def counted(model, pixel_values):
        calls.append(pixel_values.shape[0])
        return original(model, pixel_values)

    monkeypatch.setattr(sam_module, "image_embeddings", counted)
    return calls


def test_sam_encoder_runs_once_per_image_and_a_killed_run_resumes_exactly(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = prepared(tmp_path, "segmentation_only")
    images = sum(len({a["image_id"] for a in json.loads((data / name).read_text())["annotations"]})
                 for name in ("train.json", "val.json"))  # the negative image has no mask to learn from or score
    calls = counting_encoder(monkeypatch)
    straight = train(data, tmp_path / "straight")
    assert sum(calls) == images  # two epochs, one encoding per image

    calls.clear()
    steps_per_epoch = -(-straight.runs["sam"].train_images // 2)
    with pytest.raises(Stop):  # killed mid-epoch 1 (0-based), after its first step
        train(data, tmp_path / "killed", on_step=stop_at("sam", steps_per_epoch + 1))
    assert sum(calls) == images
    resumed = train(data, tmp_path / "killed", resume=True)
    assert sum(calls) == images  # the resumed run read every embedding from the cache
    assert resumed.runs["sam"].resumed_from is not None

    assert straight.runs["sam"].best_epoch == resumed.runs["sam"].best_epoch
    want, got = adapter_weights(straight.runs["sam"].adapter_dir), adapter_weights(resumed.runs["sam"].adapter_dir)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[key], got[key]) for key in want)
    assert [e["train_loss"] for e in straight.runs["sam"].epochs][:1] == \
        [e["train_loss"] for e in resumed.runs["sam"].epochs][:1]


def test_sam_image_encoder_lora_learns_and_caches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = prepared(tmp_path, "segmentation_only")
    calls = counting_encoder(monkeypatch)
    dino, sam = teacher_configs(preset="tiny", epochs=1, batch_size=2)
    sam.lora.image_encoder, sam.lora.max_trainable_fraction = True, 0.05  # the tiny model: 2.8 % with its encoder
    sam.training.lr, sam.training.max_grad_norm = 3e-3, None
    trainer = TeacherTrainer(tmp_path / "run", ModeConfig.read(data), train=data / "train.json",
                             val=data / "val.json", sam=sam, dynamics=fast_dynamics(), progress=False)
    run = trainer.train_sam()

    assert sum(calls) == 0 and not (tmp_path / "run" / "cache" / "sam_embeddings").exists()
    weights = adapter_weights(run.adapter_dir)
    encoder_b = [value for key, value in weights.items() if "vision_encoder" in key and "lora_B" in key]
    assert encoder_b and all(value.abs().sum() > 0 for value in encoder_b)  # LoRA B starts at 0: it trained
    assert any("mask_decoder" in key for key in weights)


def test_grounding_dino_killed_mid_epoch_resumes_like_an_uninterrupted_run(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only")
    every_step = CheckpointConfig(save_every_n_steps=1)  # a mid-epoch checkpoint to resume from
    straight = train(data, tmp_path / "straight", checkpointing=every_step)
    steps_per_epoch = -(-straight.runs["grounding_dino"].train_images // 2)
    with pytest.raises(Stop):  # killed after the first step of epoch 1
        train(data, tmp_path / "killed", checkpointing=every_step,
              on_step=stop_at("grounding_dino", steps_per_epoch + 1))
    resumed = train(data, tmp_path / "killed", checkpointing=every_step, resume=True)
    assert Path(resumed.runs["grounding_dino"].resumed_from).name == f"step-{steps_per_epoch + 1:08d}.pt"
    want = adapter_weights(straight.runs["grounding_dino"].adapter_dir)
    got = adapter_weights(resumed.runs["grounding_dino"].adapter_dir)
    assert want.keys() == got.keys() and all(torch.allclose(want[k], got[k], atol=1e-6, rtol=0) for k in want)
    # The best adapter may be an early epoch (mAP stays ~0 with random weights): the last epoch must match too.
    last = [torch.load(run / "checkpoints" / "grounding_dino" / "epoch-0001.pt", weights_only=True)["model"]
            for run in (tmp_path / "straight", tmp_path / "killed")]
    assert all(torch.allclose(last[0][k], last[1][k], atol=1e-6, rtol=0) for k in last[0])


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path: Path) -> None:
    data = prepared(tmp_path, "segmentation_only")
    train(data, tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError, match="--resume"):
        train(data, tmp_path / "run", epochs=1)


def test_too_many_trainable_parameters_stop_before_training(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only")
    dino = TeacherGroundingDinoLoraConfig(model={"preset": "tiny"}, lora={"max_trainable_fraction": 0.0001})
    trainer = TeacherTrainer(tmp_path / "run", ModeConfig.read(data), train=data / "train.json",
                             val=data / "val.json", grounding_dino=dino, progress=False)
    with pytest.raises(ModelError, match="max_trainable_fraction"):
        trainer.run()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_mode_config_asks_for_validate_or_auto_detect(tmp_path: Path) -> None:
    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=4, image_size=(192, 160))
    with pytest.raises(ConfigError, match="--auto-detect"):
        resolve_mode(source, source, tmp_path / "run")
    mode, train_file, val_file = resolve_mode(source, source, tmp_path / "run", auto_detect=True)
    assert mode.annotation_mode == "detection_only"
    assert train_file.is_file() and train_file.parent == tmp_path / "run" / "dataset" / "train"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MLCORE_MODELS_DIR", None)
    return subprocess.run([sys.executable, "-m", "mlcore.cli.app", "train-teacher", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)


def test_cli_trains_end_to_end(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_and_segmentation")
    out = tmp_path / "run"
    completed = run_cli("--data", str(data / "train.json"), "--val", str(data / "val.json"), "--output", str(out),
                        "--preset", "tiny", "--device", "cpu", "--epochs", "1", "--batch-size", "4", "--no-progress")
    assert completed.returncode == 0, completed.stderr
    assert (out / "grounding_dino_lora").is_dir() and (out / "sam_lora").is_dir()
    assert set(json.loads((out / "metrics.json").read_text())["teachers"]) == {"grounding_dino", "sam"}
    assert "metrics:" in completed.stdout


def test_cli_without_mode_config_exits_2_with_the_fix(tmp_path: Path) -> None:
    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=3, image_size=(192, 160))
    completed = run_cli("--data", str(source), "--val", str(source), "--output", str(tmp_path / "run"),
                        "--preset", "tiny", "--device", "cpu")
    assert completed.returncode == 2
    assert "mlcore validate" in completed.stderr and "--auto-detect" in completed.stderr
    assert "Traceback" not in completed.stderr


def moved_splits(tmp_path: Path):
    """A detection-only train / val split, each file moved away from its images (into moved/split, moved/pics)."""
    data = prepared(tmp_path, "detection_only", num_images=5)
    return data, *relocate_splits(data, tmp_path)


def test_splits_moved_away_from_their_images_need_images(tmp_path: Path) -> None:
    data, train_file, val_file = moved_splits(tmp_path)
    mode = ModeConfig.read(data).model_copy(update={"images_root": str(tmp_path / "gone")})  # another machine's
    with pytest.raises(DatasetError) as error:
        TeacherTrainer(tmp_path / "run", mode, train=train_file.annotations, val=val_file.annotations)
    assert all(str(folder) in str(error.value) for folder in train_file.tried_folders())
    trainer = TeacherTrainer(tmp_path / "run", mode, train=train_file.annotations, val=val_file.annotations,
                             train_images=train_file.images, val_images=val_file.images)
    assert trainer.train.images_root == trainer.val.images_root == train_file.images
    assert trainer.train[0].image_path.is_file()
    with pytest.raises(DatasetError) as error:  # --auto-detect validates them: it says which folders it tried
        train_teachers(train_file.annotations, val_file.annotations, tmp_path / "auto", auto_detect=True,
                       preset="tiny", device="cpu")
    assert all(str(folder) in str(error.value) for folder in train_file.tried_folders())
    assert f"--images '{train_file.images}'" in str(error.value)


def test_cli_images_reach_auto_detect_and_the_trainer(tmp_path: Path) -> None:
    _, train_file, val_file = moved_splits(tmp_path)
    completed = run_cli("--data", str(train_file.annotations), "--val", str(val_file.annotations), "--auto-detect",
                        "--images", str(train_file.images), "--output", str(tmp_path / "run"), "--preset", "tiny",
                        "--device", "cpu", "--epochs", "1", "--batch-size", "4", "--no-progress")
    assert completed.returncode == 0, completed.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["images_root"] == {"train": str(train_file.images), "val": str(train_file.images)}


def test_prefect_task_turns_user_errors_into_a_failed_state(tmp_path: Path) -> None:
    from tasks.train_teacher import train_teacher_task

    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=3, image_size=(192, 160))
    state = train_teacher_task.fn(str(source), str(source), str(tmp_path / "run"), preset="tiny", device="cpu")
    assert state.is_failed() and "--auto-detect" in state.message
