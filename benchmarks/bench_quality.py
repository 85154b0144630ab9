"""The demo's quality chain: does every stage add measured quality? Everything scored on the held-out test split.

    python benchmarks/bench_quality.py            # the demo's sizes (`mlcore demo`), ~20 minutes on 2 cores
    python benchmarks/bench_quality.py --quick    # a smaller seeded run (~5 minutes)

Data: `make_field_dataset` (the `field` domain: textured, cluttered, occluded shapes), which the shipped `shapes`
teachers never saw in pretraining (they learned the `studio` and `varied` domains): a labelled set split
train/val/test, and an unlabelled pool of the same domain.
1. zero-shot teachers (the shipped bases, adapters untrained) -> box mAP (GroundedSAM), SAM mask IoU given the
   ground-truth boxes;
2. LoRA-tuned teachers (`train_teachers`, preset shapes) -> the same; forgetting: Grounding DINO's box mAP on the
   studio domain with all six shape names, base vs tuned;
3. students: distilled from teacher labels on the pool plus the labelled train split (prefer_ground_truth), and the
   same student, same epochs, on the labelled train split alone -> box and mask mAP;
4. the distilled student exported to ONNX and INT8 (static, calibrated) -> mAP of each file, and the gate's drop.
With --relu-student, steps 3 (distilled) and 4 again for the student's "-relu" variant (`students.distilled_relu`,
`exports_relu`): what the int8-friendly activation costs in accuracy, on the same teachers and data.
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
from bench_distillation import student_map, teacher_map  # noqa: E402
from machine import code_version, machine_info  # noqa: E402

RESULT = HERE / "results" / "quality_chain_cpu.json"
SPLIT = "train:0.6,val:0.2,test:0.2"  # as `mlcore demo`
GOALS = {
    "zero_shot_map50": ">= 0.5",
    "lora_gain_map50_95": ">= +0.10 over zero-shot",
    "sam_mask_iou_after_lora": ">= 0.85 (ground-truth boxes)",
    "distilled_over_tuned_teacher_map50_95": ">= 0.9, and above the labelled-only student",
    "int8_drop_points": "<= 1 (gate enforcing it)",
}


def prepare(root: Path, labelled: int, pool: int, seed: int) -> tuple[Path, Path]:
    from mlcore.data.demo import make_field_dataset
    from mlcore.data.prepare import prepare_dataset

    source = make_field_dataset(root / "field", num_images=labelled, unlabeled=pool, seed=seed)
    report = prepare_dataset(source, output_dir=root / "prepared", split=SPLIT, seed=seed,
                             progress=False)
    assert report.usable, report.outputs
    return root / "prepared", root / "field" / "unlabeled"


def sam_mask_iou(teachers_dir: Path, data: Path, split: str) -> float:
    """Mean mask IoU of the SAM teacher prompted with the ground-truth boxes (the teacher trainer's own measure)."""
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.finetune.evaluation import evaluate_sam
    from mlcore.finetune.sam_cache import LiveSamEmbeddings
    from mlcore.teachers.adapters import load_adapter
    from mlcore.teachers.grounded_sam import TEACHER_FOLDERS

    mode = ModeConfig.read(data)
    teacher = load_adapter(teachers_dir / TEACHER_FOLDERS["sam"])  # its encoder may carry LoRA: encode afresh
    dataset = CocoDataset(data / f"{split}.json", Path(mode.images_root))
    return evaluate_sam(teacher, dataset, range(len(dataset)), LiveSamEmbeddings(teacher),
                        mode.class_of_category).metrics["mean_iou"]


def studio_forgetting(teachers_dir: Path, images: int) -> dict[str, float]:
    """Grounding DINO on the pretraining domain, prompted with all six shapes: base vs LoRA-tuned box mAP."""
    from mlcore.pretrain.dino import evaluate_dino
    from mlcore.pretrain.scenes import held_out
    from mlcore.teachers import load_grounding_dino
    from mlcore.teachers.adapters import load_adapter
    from mlcore.teachers.grounded_sam import TEACHER_FOLDERS

    scenes = held_out("studio", images, seed=1)
    base = load_grounding_dino("shapes")
    tuned = load_adapter(teachers_dir / TEACHER_FOLDERS["grounding_dino"])
    before = evaluate_dino(base.model, base.tokenizer, scenes)
    after = evaluate_dino(tuned.model, tuned.tokenizer, scenes)
    return {"base_map50_95": before["map50_95"], "tuned_map50_95": after["map50_95"],
            "change_map50_95": after["map50_95"] - before["map50_95"], "images": images}


def distil(data: Path, teachers: Path, output: Path, *, unlabeled: Path | None, epochs: int, imgsz: int,
           batch: int, student: str | None = None) -> tuple[Path, float]:
    from mlcore.config.schemas.students import StudentTraining
    from mlcore.config.schemas.training import TrainingDynamicsConfig
    from mlcore.data.mode_config import ModeConfig
    from mlcore.distill.trainer import DistillationTrainer

    started = time.perf_counter()
    trainer = DistillationTrainer(output, ModeConfig.read(data), train=data / "train.json", val=data / "val.json",
                                  teachers_dir=teachers, unlabeled_dir=unlabeled, student=student,
                                  training=StudentTraining(imgsz=imgsz, epochs=epochs, batch=batch, patience=0),
                                  dynamics=TrainingDynamicsConfig(warmup_epochs=1.0, seed=0), progress=False)
    return trainer.run().best_path, time.perf_counter() - started


def exported_maps(student: Path, data: Path, output: Path, imgsz: int) -> dict:
    from mlcore.data.mode_config import ModeConfig
    from mlcore.optimization.gate import evaluate_model_file
    from mlcore.optimization.optimize import optimize_model

    mode = ModeConfig.read(data)
    result = optimize_model(student, output, quantize="int8", calibration_data=data / "train.json",
                            val_data=data / "val.json", category_ids=mode.category_ids, imgsz=imgsz)
    maps = {"onnx": evaluate_model_file(result.onnx.path, data / "test.json", category_ids=mode.category_ids)}
    if result.quantized is not None:
        maps["int8"] = evaluate_model_file(result.quantized.path, data / "test.json", category_ids=mode.category_ids)
    gate = result.gate.to_json() if result.gate is not None else None
    return {"test_map": maps, "gate": gate and {k: gate[k] for k in ("metric", "drop", "threshold", "passed", "kept")}}


def quality(work: Path, args: argparse.Namespace) -> dict:
    from mlcore.data.mode_config import ModeConfig
    from mlcore.finetune.setup import train_teachers
    from mlcore.teachers.untrained import save_untrained_teachers

    data, pool = prepare(work, args.labelled, args.pool, args.seed)
    mode = ModeConfig.read(data)
    seconds = {}
    save_untrained_teachers(work / "zero_shot", mode, preset="shapes")
    zero_shot = {"box": teacher_map(work / "zero_shot", data, "test"),
                 "sam_mask_iou": sam_mask_iou(work / "zero_shot", data, "test")}
    started = time.perf_counter()
    runs = train_teachers(data / "train.json", data / "val.json", work / "teachers", preset="shapes", device="cpu",
                          epochs=args.teacher_epochs, progress=False).runs
    seconds["teachers"] = time.perf_counter() - started
    tuned = {"box": teacher_map(work / "teachers", data, "test"),
             "sam_mask_iou": sam_mask_iou(work / "teachers", data, "test"),
             "val_best": {family: run.best for family, run in runs.items()},
             "best_epoch": {family: run.best_epoch for family, run in runs.items()}}
    forgetting = studio_forgetting(work / "teachers", args.forgetting_images)
    distilled, seconds["distilled_student"] = distil(data, work / "teachers", work / "distilled", unlabeled=pool,
                                                     epochs=args.student_epochs, imgsz=args.imgsz, batch=args.batch)
    labelled_only, seconds["labelled_only_student"] = distil(
        data, work / "teachers", work / "labelled_only", unlabeled=None, epochs=args.student_epochs,
        imgsz=args.imgsz, batch=args.batch)
    students = {"distilled": student_map(distilled, data, "test", args.imgsz),
                "labelled_only": student_map(labelled_only, data, "test", args.imgsz)}
    started = time.perf_counter()
    exports = exported_maps(distilled, data, work / "export", args.imgsz)
    seconds["export"] = time.perf_counter() - started
    if args.relu_student:  # the same distillation with the int8-friendly student (mlcore's "-relu" variant)
        name = f"{mode.recommended_student}-relu"
        relu, seconds["distilled_relu_student"] = distil(data, work / "teachers", work / "distilled_relu",
                                                         unlabeled=pool, epochs=args.student_epochs,
                                                         imgsz=args.imgsz, batch=args.batch, student=name)
        students["distilled_relu"] = {"student": name, **student_map(relu, data, "test", args.imgsz)}
        relu_exports = exported_maps(relu, data, work / "export_relu", args.imgsz)
    teacher_map50_95 = tuned["box"]["map50_95"]
    return {
        "data": {"domain": "field (never seen in pretraining)", "labelled": args.labelled, "pool": args.pool,
                 "split": SPLIT, "image_size": [256, 192], "mode": mode.annotation_mode,
                 "classes": mode.class_names, "seed": args.seed},
        "budget": {"teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
                   "imgsz": args.imgsz, "batch": args.batch},
        "seconds": seconds,
        "zero_shot_teachers": zero_shot,
        "lora_teachers": tuned,
        "forgetting_on_pretraining_domain": forgetting,
        "students": students,
        "exports": exports,
        **({"exports_relu": relu_exports} if args.relu_student else {}),
        "ratios": {
            "lora_gain_map50_95": teacher_map50_95 - zero_shot["box"]["map50_95"],
            "distilled_over_tuned_teacher_map50_95": (students["distilled"]["map50_95"] / teacher_map50_95
                                                      if teacher_map50_95 > 0 else None),
            "distilled_over_labelled_only_map50_95": (
                students["distilled"]["map50_95"] / students["labelled_only"]["map50_95"]
                if students["labelled_only"]["map50_95"] > 0 else None),
        },
        "goals": GOALS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", type=int, default=80)
    parser.add_argument("--pool", type=int, default=160)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--student-epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--forgetting-images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relu-student", action="store_true",
                        help="also distil the ReLU variant of the student (same teachers, data, epochs) and export it")
    parser.add_argument("--quick", action="store_true", help="a smaller seeded run")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.quick:
        args.labelled, args.pool, args.teacher_epochs, args.student_epochs = 40, 60, 10, 8
        args.output = args.output.with_name(args.output.stem + "_quick.json")
    machine = machine_info(["torch", "transformers", "peft", "ultralytics"])
    work = Path(tempfile.mkdtemp(prefix="mlcore-bench-quality-"))
    try:
        record = {"machine": machine, "code": code_version(), "quick": args.quick, "quality": quality(work, args)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
