"""End-to-end distillation on demo data with tiny teachers (random weights, LoRA adapters as training leaves them)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlcore.config.schemas.distillation import KdBothConfig, KdDetectionOnlyConfig
from mlcore.config.schemas.students import StudentTraining
from mlcore.config.schemas.training import TrainingDynamicsConfig
from mlcore.data.demo import make_demo_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.prepare import prepare_dataset
from mlcore.distill.setup import distillation_trainer
from mlcore.distill.trainer import DistillationTrainer
from mlcore.errors import ConfigError, DatasetError
from mlcore.optimization import export_to_onnx
from mlcore.students import Student
from mlcore.teachers import load_grounding_dino
from mlcore.teachers.grounded_sam import GroundedSAM
from mlcore.teachers.untrained import save_untrained_teachers
from tests.unit.relocated import relocate_splits

DEMO_MODE = {"detection_only": "boxes", "segmentation_only": "masks", "detection_and_segmentation": "both"}
REPO = Path(__file__).resolve().parents[3]
IMGSZ = 128
EXPECTED_COMPONENTS = {"detection_only": {"detection", "logit"}, "segmentation_only": {"segmentation"},
                       "detection_and_segmentation": {"detection", "segmentation", "logit"}}


def prepared(root: Path, mode: str, num_images: int = 6, image_size: tuple[int, int] = (160, 128)) -> Path:
    source = make_demo_dataset(root / "demo", mode=DEMO_MODE[mode], num_images=num_images, negatives=0,
                               image_size=image_size, seed=0)
    report = prepare_dataset(source, output_dir=root / "prepared", split="train:0.67,val:0.33", progress=False)
    assert report.usable and report.annotation_mode == mode
    return root / "prepared"


def tiny_teachers(root: Path, mode: ModeConfig) -> Path:
    """What `train-teacher` leaves for this mode: one LoRA adapter folder per teacher the mode needs."""
    return save_untrained_teachers(root, mode)


def training(epochs: int = 2, batch: int = 2) -> StudentTraining:
    return StudentTraining(imgsz=IMGSZ, epochs=epochs, batch=batch, patience=0, workers=0)


def dynamics() -> TrainingDynamicsConfig:
    return TrainingDynamicsConfig(scheduler="constant", warmup_epochs=0.0, seed=5)


def trainer(data: Path, teachers: Path, output: Path, **options) -> DistillationTrainer:
    mode = ModeConfig.read(data)
    settings = {"training": training(), "dynamics": dynamics(), "progress": False,
                "kd": {"detection_only": KdDetectionOnlyConfig, "segmentation_only": None,
                       "detection_and_segmentation": KdBothConfig}[mode.annotation_mode]}
    settings.update(options)
    kd = settings.pop("kd")
    if isinstance(kd, type):
        # Random tiny teachers score low and match no annotation: keep all their boxes beside the annotations, so
        # every loss component has inputs (union: annotations plus the teacher boxes overlapping none of them).
        kd = kd(teacher_score_threshold=0.0, ground_truth={"rule": "union"})
    return DistillationTrainer(output, mode, train=data / "train.json", val=data / "val.json", teachers_dir=teachers,
                               kd=kd, **settings)


@pytest.fixture
def count_teacher_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images passed to the teachers, across every GroundedSAM in the test."""
    seen: list[int] = []
    original = GroundedSAM.predict

    def counted(self, images, *args, **kwargs):
        seen.append(len(images) if isinstance(images, list) else 1)
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(GroundedSAM, "predict", counted)
    return seen


@pytest.fixture(scope="module", params=sorted(DEMO_MODE))
def finished_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    mode_name = request.param
    root = tmp_path_factory.mktemp(mode_name)
    data = prepared(root, mode_name)
    teachers = tiny_teachers(root / "teachers", ModeConfig.read(data))
    result = trainer(data, teachers, root / "run").run()
    return mode_name, data, result


def test_each_mode_distils_end_to_end(finished_run) -> None:
    mode, _, result = finished_run
    for name in ("best.pt", "last.pt", "student.json", "metrics.json"):
        assert (result.output_dir / name).is_file(), name
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2
    summary = json.loads((result.output_dir / "student.json").read_text())
    assert summary["mode"] == mode
    assert set(summary["teachers"]) == set(ModeConfig.read(finished_run[1]).recommended_teachers)
    assert all(len(entry["adapter_sha256"]) == 64 for entry in summary["teachers"].values())


def test_enabled_loss_components_are_finite_and_non_zero_and_disabled_ones_absent(finished_run) -> None:
    mode, _, result = finished_run
    for epoch in json.loads((result.output_dir / "metrics.json").read_text())["epochs"]:
        components = {key.removeprefix("loss_"): value for key, value in epoch.items() if key.startswith("loss_")}
        assert set(components) == EXPECTED_COMPONENTS[mode], components
        assert all(np.isfinite(value) and value > 0 for value in components.values()), components


def test_the_student_is_a_prompt_free_ultralytics_model_with_the_dataset_classes(finished_run) -> None:
    from ultralytics import YOLO

    mode, data, result = finished_run
    names = ModeConfig.read(data).class_names
    model = YOLO(str(result.best_path))
    expected = ["object"] if result.student.startswith("fastsam") else names
    assert list(model.names.values()) == expected
    image = np.full((IMGSZ, IMGSZ + 32, 3), 100, dtype=np.uint8)
    model.predict(image, imgsz=IMGSZ, verbose=False)
    student = Student.load(result.best_path)
    parameters = list(inspect.signature(student.predict).parameters)
    assert parameters[0] == "images" and not {"prompt", "prompts", "text", "boxes", "points"} & set(parameters)


def test_the_exported_onnx_takes_exactly_one_image(finished_run, tmp_path: Path) -> None:
    import onnxruntime

    _, _, result = finished_run
    path = export_to_onnx(Student.load(result.best_path), tmp_path / "student.onnx", imgsz=IMGSZ,
                          dynamic_batch=False).path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert len(inputs) == 1 and list(inputs[0].shape) == [1, 3, IMGSZ, IMGSZ]
    session.run(None, {inputs[0].name: np.zeros((1, 3, IMGSZ, IMGSZ), dtype=np.float32)})


def test_renaming_classes_in_the_config_renames_the_students_classes(tmp_path: Path) -> None:
    from ultralytics import YOLO

    data = prepared(tmp_path, "detection_only", num_images=4)
    mode = ModeConfig.read(data)
    renamed = [f"renamed_{name}" for name in mode.class_names]
    kd = KdDetectionOnlyConfig(teacher_score_threshold=0.0, data={"class_names": renamed})
    result = trainer(data, tiny_teachers(tmp_path / "teachers", mode), tmp_path / "run", kd=kd,
                     training=training(epochs=1)).run()
    assert list(YOLO(str(result.best_path)).names.values()) == renamed
    assert list(json.loads((tmp_path / "run" / "student.json").read_text())["class_mapping"].values()) == renamed


def test_a_wrong_number_of_class_names_is_a_config_error(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only", num_images=4)
    kd = KdDetectionOnlyConfig(data={"class_names": ["only_one", "and_two", "and_three", "and_four"]})
    with pytest.raises(ConfigError, match="class_names"):
        trainer(data, tmp_path / "teachers", tmp_path / "run", kd=kd)


class Stop(Exception):
    """Stands in for a killed process."""


def test_teachers_label_each_image_once_across_epochs_and_a_resume(tmp_path: Path, count_teacher_images) -> None:
    data = prepared(tmp_path, "detection_and_segmentation")
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    train_images = len(json.loads((data / "train.json").read_text())["images"])

    def stop_at(step: int):
        def callback(global_step: int) -> None:
            if global_step == step:
                raise Stop
        return callback

    with pytest.raises(Stop):
        trainer(data, teachers, tmp_path / "run", on_step=stop_at(3)).run()  # killed in the second epoch
    assert sum(count_teacher_images) == train_images
    result = trainer(data, teachers, tmp_path / "run", resume=True).run()
    assert sum(count_teacher_images) == train_images  # the resumed run read every label from the cache
    assert result.teacher_calls == 0
    assert len(result.epochs) == 2


def test_a_resumed_run_ends_with_the_same_student_as_an_uninterrupted_one(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only", num_images=6)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    straight = trainer(data, teachers, tmp_path / "straight").run()

    def stop(global_step: int) -> None:
        if global_step == 2:
            raise Stop

    with pytest.raises(Stop):
        trainer(data, teachers, tmp_path / "resumed", on_step=stop).run()
    resumed = trainer(data, teachers, tmp_path / "resumed", resume=True).run()
    first, second = Student.load(straight.last_path).model, Student.load(resumed.last_path).model
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), msg=name)


def test_unlabeled_images_get_teacher_labels_and_join_training(tmp_path: Path, count_teacher_images) -> None:
    data = prepared(tmp_path, "detection_only")
    extra = make_demo_dataset(tmp_path / "extra", mode="boxes", num_images=3, image_size=(160, 128), seed=9)
    unlabeled = tmp_path / "unlabeled"
    shutil.copytree(extra.parent / "images", unlabeled)
    train_images = len(json.loads((data / "train.json").read_text())["images"])
    result = trainer(data, tiny_teachers(tmp_path / "teachers", ModeConfig.read(data)), tmp_path / "run",
                     unlabeled_dir=unlabeled, training=training(epochs=1)).run()
    assert result.pseudo_labelled_images == 3
    assert sum(count_teacher_images) == train_images + 3
    summary = json.loads((tmp_path / "run" / "student.json").read_text())
    assert summary["data"]["training_images"] == train_images + 3
    assert summary["data"]["pseudo_labelled_images"] == 3


def test_feature_distillation_adds_its_component(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only", num_images=4)
    mode = ModeConfig.read(data)
    kd = KdDetectionOnlyConfig(teacher_score_threshold=0.0)
    kd.losses.feature_distillation_loss.enabled = True
    teachers = tiny_teachers(tmp_path / "teachers", mode)
    channels = load_grounding_dino("tiny").model.config.d_model
    kd.losses.feature_distillation_loss.adapter_channels = channels
    result = trainer(data, teachers, tmp_path / "run", kd=kd, training=training(epochs=1)).run()
    epoch = json.loads((result.output_dir / "metrics.json").read_text())["epochs"][0]
    assert np.isfinite(epoch["loss_feature"]) and epoch["loss_feature"] > 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MLCORE_MODELS_DIR", None)
    return subprocess.run([sys.executable, "-m", "mlcore.cli.app", "train-student", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)


def test_cli_distils_end_to_end(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_and_segmentation", num_images=4)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    out = tmp_path / "run"
    completed = run_cli("--data", str(data / "train.json"), "--val", str(data / "val.json"), "--teachers",
                        str(teachers), "--output", str(out), "--student", "yolov8n-seg", "--epochs", "1", "--imgsz",
                        str(IMGSZ), "--batch-size", "2", "--device", "cpu", "--no-progress")
    assert completed.returncode == 0, completed.stderr
    assert (out / "best.pt").is_file() and (out / "student.json").is_file()
    assert "student yolov8n-seg" in completed.stdout


def test_cli_bad_imgsz_is_one_clear_error(tmp_path: Path) -> None:
    data = prepared(tmp_path, "detection_only", num_images=4)
    completed = run_cli("--data", str(data / "train.json"), "--val", str(data / "val.json"), "--teachers",
                        str(tmp_path), "--output", str(tmp_path / "run"), "--imgsz", "100", "--device", "cpu")
    assert completed.returncode == 2
    assert "--imgsz" in completed.stderr and "multiple of 32" in completed.stderr
    assert "Traceback" not in completed.stderr


def moved_splits(tmp_path: Path):
    """A detection-only train / val split, each file moved away from its images (into moved/split, moved/pics)."""
    data = prepared(tmp_path, "detection_only", num_images=4)
    return data, *relocate_splits(data, tmp_path)


def test_splits_moved_away_from_their_images_need_images(tmp_path: Path) -> None:
    data, train_file, val_file = moved_splits(tmp_path)
    mode = ModeConfig.read(data).model_copy(update={"images_root": str(tmp_path / "gone")})  # another machine's
    files = {"train": train_file.annotations, "val": val_file.annotations, "teachers_dir": tmp_path / "teachers"}
    with pytest.raises(DatasetError) as error:
        DistillationTrainer(tmp_path / "run", mode, **files)
    assert all(str(folder) in str(error.value) for folder in train_file.tried_folders())
    built = DistillationTrainer(tmp_path / "run", mode, **files, train_images=train_file.images,
                                val_images=val_file.images)
    assert built.train_set.images_root == built.val_set.images_root == train_file.images
    with pytest.raises(DatasetError) as error:  # --auto-detect validates them: it says which folders it tried
        distillation_trainer(train_file.annotations, val_file.annotations, tmp_path / "auto",
                             teachers=tmp_path / "teachers", auto_detect=True, device="cpu")
    assert f"--images '{train_file.images}'" in str(error.value)
    built = distillation_trainer(train_file.annotations, val_file.annotations, tmp_path / "auto",
                                 teachers=tmp_path / "teachers", auto_detect=True, images=train_file.images,
                                 device="cpu")
    assert built.train_set.images_root == built.val_set.images_root == train_file.images


def test_cli_images_reach_the_trainer(tmp_path: Path) -> None:
    data, train_file, val_file = moved_splits(tmp_path)
    teachers = tiny_teachers(tmp_path / "teachers", ModeConfig.read(data))
    completed = run_cli("--data", str(train_file.annotations), "--val", str(val_file.annotations), "--auto-detect",
                        "--images", str(train_file.images), "--teachers", str(teachers), "--output",
                        str(tmp_path / "run"), "--epochs", "1", "--imgsz", str(IMGSZ), "--batch-size", "2",
                        "--device", "cpu", "--no-progress")
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((tmp_path / "run" / "student.json").read_text())
    assert summary["data"]["images_root"] == {"train": str(train_file.images), "val": str(train_file.images)}


def test_prefect_task_turns_user_errors_into_a_failed_state(tmp_path: Path) -> None:
    from tasks.train_student import train_student_task

    source = make_demo_dataset(tmp_path / "demo", mode="boxes", num_images=3, image_size=(160, 128))
    state = train_student_task.fn(str(source), str(source), str(tmp_path), str(tmp_path / "run"), device="cpu")
    assert state.is_failed() and "--auto-detect" in state.message
