"""Distillation quality within a fixed CPU budget (teacher labelling speed: bench_labelling.py).

    python benchmarks/bench_distillation.py                      # ~20 minutes on 2 cores
    python benchmarks/bench_distillation.py --quick              # smoke run of every step (~3 minutes)

Quality (generated shapes, `mlcore demo-data`, split train/val/test, everything scored on the held-out test split):
1. tiny teachers fine-tuned with LoRA (`train_teachers`, preset tiny: offline there are no pretrained weights, so
   they learn from scratch) -> teacher mAP50-95 on test (GroundedSAM, low thresholds, COCO mAP);
2. the student distilled from them (rule teacher_only: teacher boxes and soft scores, no annotation) -> mAP;
3. the same student, same epochs, trained on the annotations alone (prefer_ground_truth, logit KD off) -> mAP.
The budget is epochs, not seconds, so the quality figures do not depend on the machine's load; seconds are recorded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from machine import code_version, machine_info  # noqa: E402

RESULT = HERE / "results" / "distillation_quality_cpu.json"


def prepare(root: Path, images: int, mode: str, seed: int) -> Path:
    from mlcore.data.demo import make_demo_dataset
    from mlcore.data.prepare import prepare_dataset

    source = make_demo_dataset(root / "demo", mode=mode, num_images=images, negatives=0, image_size=(256, 192),
                               seed=seed)
    report = prepare_dataset(source, output_dir=root / "prepared", split="train:0.6,val:0.2,test:0.2", seed=seed,
                             progress=False)
    assert report.usable, report.outputs
    return root / "prepared"


def teacher_map(teachers_dir: Path, data: Path, split: str) -> dict[str, float]:
    """The teachers as users run them (GroundedSAM), thresholds low so COCO mAP sees the whole ranking."""
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.evaluation.coco_map import coco_map
    from mlcore.teachers.grounded_sam import GroundedSAM

    mode = ModeConfig.read(data)
    model = GroundedSAM.from_pretrained(teachers_dir, mode, box_threshold=0.0, text_threshold=0.0)
    dataset = CocoDataset(data / f"{split}.json", Path(mode.images_root))
    results = []
    for index in range(len(dataset)):
        sample = dataset[index]
        prediction = model.predict(sample.image_path)[0]
        for box, score, class_id in zip(prediction.boxes.tolist()[:100], prediction.scores.tolist(),
                                        prediction.class_ids.tolist()):
            x1, y1, x2, y2 = box
            results.append({"image_id": sample.image_id, "category_id": mode.category_ids[str(class_id)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return coco_map(data / f"{split}.json", results, sorted(mode.category_ids.values()))


def student_map(weights: Path, data: Path, split: str, imgsz: int) -> dict[str, float]:
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.evaluation.student_eval import evaluate_student
    from mlcore.students import Student

    mode = ModeConfig.read(data)
    dataset = CocoDataset(data / f"{split}.json", Path(mode.images_root))
    return evaluate_student(Student.load(weights), dataset, data / f"{split}.json", mode.category_ids, imgsz=imgsz)


def distil(data: Path, teachers: Path, output: Path, *, rule: str, logits: bool, epochs: int, imgsz: int,
           batch: int) -> tuple[Path, float]:
    from mlcore.config.schemas.distillation import KdDetectionOnlyConfig
    from mlcore.config.schemas.students import StudentTraining
    from mlcore.config.schemas.training import TrainingDynamicsConfig
    from mlcore.data.mode_config import ModeConfig
    from mlcore.distill.trainer import DistillationTrainer

    kd = KdDetectionOnlyConfig(teacher_score_threshold=0.3, ground_truth={"rule": rule})
    kd.losses.logit_distillation_loss.enabled = logits
    started = time.perf_counter()
    trainer = DistillationTrainer(output, ModeConfig.read(data), train=data / "train.json", val=data / "val.json",
                                  teachers_dir=teachers, kd=kd,
                                  training=StudentTraining(imgsz=imgsz, epochs=epochs, batch=batch, patience=0),
                                  dynamics=TrainingDynamicsConfig(warmup_epochs=1.0, seed=0), progress=False)
    result = trainer.run()
    return result.best_path, time.perf_counter() - started


def quality(work: Path, args: argparse.Namespace) -> dict:
    from mlcore.finetune.setup import train_teachers

    data = prepare(work, args.images, "boxes", seed=0)
    started = time.perf_counter()
    teachers = train_teachers(data / "train.json", data / "val.json", work / "teachers", preset="tiny",
                              device="cpu", epochs=args.teacher_epochs, batch_size=4, progress=False)
    teacher_seconds = time.perf_counter() - started
    distilled, distil_seconds = distil(data, work / "teachers", work / "distilled", rule="teacher_only", logits=True,
                                       epochs=args.student_epochs, imgsz=args.imgsz, batch=args.batch)
    supervised, supervised_seconds = distil(data, work / "teachers", work / "ground_truth",
                                            rule="prefer_ground_truth", logits=False, epochs=args.student_epochs,
                                            imgsz=args.imgsz, batch=args.batch)
    teacher = teacher_map(work / "teachers", data, "test")
    student = student_map(distilled, data, "test", args.imgsz)
    baseline = student_map(supervised, data, "test", args.imgsz)
    ratio = student["map50_95"] / teacher["map50_95"] if teacher["map50_95"] > 0 else None
    return {
        "data": {"images": args.images, "split": "train:0.6,val:0.2,test:0.2", "image_size": [256, 192],
                 "mode": "detection_only"},
        "budget": {"teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
                   "imgsz": args.imgsz, "batch": args.batch},
        "seconds": {"teachers": teacher_seconds, "distilled_student": distil_seconds,
                    "ground_truth_student": supervised_seconds},
        "test_map": {"teacher": teacher, "distilled_student": student, "ground_truth_student": baseline},
        "teacher_val_best": {family: run.best for family, run in teachers.runs.items()},
        "distilled_over_teacher_map50_95": ratio,
        "goal": "distilled student >= 0.9 x teacher mAP50-95",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--student-epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a tiny budget: a smoke run of every step")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.quick:
        args.images, args.teacher_epochs, args.student_epochs = 15, 1, 2
    work = Path(tempfile.mkdtemp(prefix="mlcore-bench-quality-"))
    try:
        record = {"machine": machine_info(["torch", "transformers", "peft", "ultralytics"]), "code": code_version(),
                  "quick": args.quick, "quality": quality(work, args)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
