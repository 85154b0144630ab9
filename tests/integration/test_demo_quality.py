"""The demo's story in miniature, with the shipped `shapes` teachers on the field domain they never saw: LoRA
fine-tuning beats zero-shot on held-out images, and the segmenter outlines what the true boxes hold (a seeded smaller
run of benchmarks/bench_quality.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_field_dataset
from mlcore.data.mode_config import ModeConfig
from mlcore.data.prepare import prepare_dataset
from mlcore.finetune.evaluation import evaluate_grounding_dino, evaluate_sam
from mlcore.finetune.sam_cache import LiveSamEmbeddings
from mlcore.finetune.setup import train_teachers
from mlcore.teachers.adapters import load_adapter
from mlcore.teachers.grounded_sam import TEACHER_FOLDERS
from mlcore.teachers.prompts import build_prompt_chunks
from mlcore.teachers.untrained import save_untrained_teachers


@pytest.fixture(scope="module")
def field_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("field")
    source = make_field_dataset(root / "data", num_images=48, seed=5)
    report = prepare_dataset(source, output_dir=root / "prepared", split="train:0.5,val:0.2,test:0.3", seed=5,
                             progress=False)
    assert report.usable
    return root / "prepared"


def _test_map(teachers: Path, data: Path) -> dict[str, float]:
    mode = ModeConfig.read(data)
    teacher = load_adapter(teachers / TEACHER_FOLDERS["grounding_dino"])
    dataset = CocoDataset(data / "test.json", Path(mode.images_root))
    chunks = build_prompt_chunks(teacher.tokenizer, mode.class_names)
    return evaluate_grounding_dino(teacher, dataset, data / "test.json", chunks, mode.category_ids).metrics


def _sam_iou(teachers: Path, data: Path) -> float:
    mode = ModeConfig.read(data)
    teacher = load_adapter(teachers / TEACHER_FOLDERS["sam"])
    dataset = CocoDataset(data / "test.json", Path(mode.images_root))
    return evaluate_sam(teacher, dataset, range(len(dataset)), LiveSamEmbeddings(teacher),
                        mode.class_of_category).metrics["mean_iou"]


def test_lora_fine_tuning_beats_the_zero_shot_teacher(field_split: Path, tmp_path: Path):
    mode = ModeConfig.read(field_split)
    save_untrained_teachers(tmp_path / "zero_shot", mode, preset="shapes")
    train_teachers(field_split / "train.json", field_split / "val.json", tmp_path / "tuned", preset="shapes",
                   device="cpu", epochs=15, progress=False)
    zero_shot = _test_map(tmp_path / "zero_shot", field_split)
    tuned = _test_map(tmp_path / "tuned", field_split)
    assert zero_shot["map50"] >= 0.5, zero_shot  # the shipped teacher already finds shapes in a domain it never saw
    # measured here: mAP50 0.801 -> 0.804, mAP50-95 0.554 -> 0.600 (deterministic on one machine kind)
    assert tuned["map50_95"] >= zero_shot["map50_95"] + 0.02, (zero_shot, tuned)
    # SAM with the true boxes: measured 0.882 zero-shot, 0.883 tuned; filling the box scores ~0.6
    sam_zero_shot, sam_tuned = _sam_iou(tmp_path / "zero_shot", field_split), _sam_iou(tmp_path / "tuned", field_split)
    assert sam_zero_shot >= 0.8 and sam_tuned >= sam_zero_shot - 0.01, (sam_zero_shot, sam_tuned)
