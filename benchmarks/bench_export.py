"""Edge export on CPU: fp32 ONNX vs mlcore's static INT8 vs ultralytics' own INT8, and full-size teachers vs student.

    python benchmarks/bench_export.py                          # train a student at 640, export, measure: ~40 min
    python benchmarks/bench_export.py --model runs/s/best.pt   # an existing student (trained on the same shapes data)
    python benchmarks/bench_export.py --sam-preset sam_vit_b   # a lighter SAM for the teacher timing
    python benchmarks/bench_export.py --quick                  # smoke run: 320 px, 1 epoch, tiny teachers (~1 min)

In one run, on one trained student (imgsz 640 by default):
1. the student: `--model best.pt`, or one trained here on generated shapes (`mlcore demo-data` boxes, split
   train/val/test) from the annotations alone (DistillationTrainer, kd_detection_only, rule prefer_ground_truth, logit
   distillation off; tiny LoRA teachers are created only because the trainer labels every image; with this rule
   annotated images keep their annotations) for a fixed number of epochs; its training time is recorded;
2. three ONNX models at the same imgsz, all static batch 1, opset 17, from the same checkpoint:
   `fp32` (`export_to_onnx`), `mlcore_int8` (`quantize_int8_static`: QDQ, per-channel, pre-processed, calibrated on
   the TRAIN split through mlcore's letterbox, default exclusion of the decode tail) and `ultralytics_int8`
   (ultralytics' `export(format="onnx", quantize=8)`, what its `int8=True` maps to, calibrated on the same train images
   through a YOLO dataset YAML written here);
3. on the held-out test split: mAP50-95 of each (`evaluate_engine` over `load_engine`), and CPU latency at batch 1,
   the three models interleaved round-robin over the same images (the first model rotates per image) so that a
   noisy neighbour hits all of them alike. `predict` is end to end on a decoded RGB array (letterbox, ONNX Runtime,
   NMS); `forward` is ONNX Runtime alone on the letterboxed array. A sequential `benchmark_speed` pass per model is
   recorded as a cross-check;
4. the full-size teachers (Grounding DINO Swin-T + SAM ViT-H by default, random weights: speed does not depend on
   them) labelling a few test images end to end (`GroundedSAM.predict`, the 3 class names), against the student's
   fp32 and INT8 ONNX `predict` on the same images, measured right after, in the same process.

Goals (issue 6): mlcore INT8 latency <= 0.5x fp32 and <= 0.5x ultralytics' INT8, mAP50-95 drop <= 1 point.
Results: benchmarks/results/export_cpu.json (--quick: benchmarks/.cache/export_cpu_quick.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from machine import code_version, loads, machine_info  # noqa: E402

RESULT = HERE / "results" / "export_cpu.json"
QUICK_RESULT = HERE / ".cache" / "export_cpu_quick.json"
MODELS = ("fp32", "mlcore_int8", "ultralytics_int8")
EXPORT_PACKAGES = ("onnxruntime", "onnx", "ultralytics", "torch", "transformers", "numpy")
GOALS = {"latency_vs_fp32": 0.5, "latency_vs_ultralytics_int8": 0.5, "map50_95_drop_points": 1.0}
SPLIT = "train:0.6,val:0.2,test:0.2"


# --- 1. data and student -------------------------------------------------------------------------------------------

def prepare(root: Path, images: int, image_size: tuple[int, int], seed: int) -> Path:
    from mlcore.data.demo import make_demo_dataset
    from mlcore.data.prepare import prepare_dataset

    source = make_demo_dataset(root / "demo", mode="boxes", num_images=images, negatives=0, image_size=image_size,
                               seed=seed)
    report = prepare_dataset(source, output_dir=root / "prepared", split=SPLIT, seed=seed, progress=False)
    assert report.usable, report.outputs
    return root / "prepared"


def tiny_teachers(root: Path, data: Path) -> Path:
    """Adapter folders as `train-teacher` leaves them (tiny, random, LoRA just applied): the trainer labels every
    image with them, but with prefer_ground_truth the annotated images learn from their annotations."""
    from mlcore.data.mode_config import ModeConfig
    from mlcore.teachers.untrained import save_untrained_teachers

    return save_untrained_teachers(root, ModeConfig.read(data))


def train_student(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mlcore.config.schemas.distillation import KdDetectionOnlyConfig
    from mlcore.config.schemas.students import StudentTraining
    from mlcore.config.schemas.training import TrainingDynamicsConfig
    from mlcore.data.mode_config import ModeConfig
    from mlcore.distill.trainer import DistillationTrainer

    teachers = tiny_teachers(work / "teachers", data)
    kd = KdDetectionOnlyConfig(teacher_score_threshold=0.3, ground_truth={"rule": "prefer_ground_truth"})
    kd.losses.logit_distillation_loss.enabled = False
    started = time.perf_counter()
    trainer = DistillationTrainer(work / "student", ModeConfig.read(data), train=data / "train.json",
                                  val=data / "val.json", teachers_dir=teachers, kd=kd,
                                  training=StudentTraining(imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
                                                           patience=0, workers=0),
                                  dynamics=TrainingDynamicsConfig(warmup_epochs=1.0, seed=0), progress=False)
    result = trainer.run()
    seconds = time.perf_counter() - started
    return {"path": result.best_path, "trained_here": True, "seconds": seconds,
            "seconds_per_epoch": seconds / args.epochs, "epochs": args.epochs, "batch": args.batch,
            "student": result.student, "best_epoch": result.best_epoch, "best_val_map50_95": result.best,
            "recipe": "DistillationTrainer, kd_detection_only, ground_truth rule prefer_ground_truth, logit "
                      "distillation off, tiny random LoRA teachers (label only), default augmentation, seed 0"}


# --- 2. exports ----------------------------------------------------------------------------------------------------

def yolo_dataset_yaml(data: Path, root: Path) -> Path:
    """A minimal YOLO dataset over the TRAIN split (links to its images, label txt files from its COCO boxes).

    ultralytics' INT8 calibration reads split `val` (`get_int8_calibration_dataloader`), so `val` points at the train
    images too. Labels are not needed for calibration, but YOLODataset scans for them; writing them keeps it quiet.
    """
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.mode_config import ModeConfig

    mode = ModeConfig.read(data)
    index_of = {int(cid): int(index) for index, cid in mode.category_ids.items()}
    dataset = CocoDataset(data / "train.json", Path(mode.images_root))
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index in range(len(dataset)):
        sample = dataset[index]
        link = images / sample.image_path.name
        if not link.exists():
            link.symlink_to(sample.image_path.resolve())
        rows = []
        for (x, y, w, h), cid in zip(sample.boxes.tolist(), sample.category_ids.tolist()):
            rows.append(f"{index_of[cid]} {(x + w / 2) / sample.width:.6f} {(y + h / 2) / sample.height:.6f} "
                        f"{w / sample.width:.6f} {h / sample.height:.6f}")
        (labels / f"{sample.image_path.stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    names = "\n".join(f"  {index}: {name}" for index, name in enumerate(mode.class_names))
    yaml = root / "calibration.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n{names}\n")
    return yaml


def export_models(student_pt: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mlcore.data.mode_config import ModeConfig
    from mlcore.optimization import CalibrationReader, calibration_images, export_to_onnx, quantize_int8_static
    from mlcore.students.ultralytics_setup import quiet_ultralytics, ultralytics_module

    mode = ModeConfig.read(data)
    out.mkdir(parents=True, exist_ok=True)
    train_images = calibration_images(data / "train.json", args.calibration_images, seed=0,
                                      images_dir=mode.images_root)
    test_images = calibration_images(data / "test.json", 4, seed=0, images_dir=mode.images_root)
    records: dict[str, Any] = {}

    started = time.perf_counter()
    exported = export_to_onnx(student_pt, out / "model.onnx", imgsz=args.imgsz, opset=17, dynamic_batch=False,
                              parity_images=[str(path) for path in test_images])
    records["fp32"] = {"path": exported.path, "seconds": time.perf_counter() - started,
                       "size_bytes": exported.size_bytes, "input_shape": exported.input_shape,
                       "parity_max_abs_diff": exported.parity.max_abs_diff if exported.parity else None,
                       "how": "mlcore export_to_onnx (ultralytics exporter), opset 17, static batch 1"}

    started = time.perf_counter()
    reader = CalibrationReader.for_model(exported.path, train_images)
    quantized = quantize_int8_static(exported.path, out / "model.int8.onnx", reader)
    records["mlcore_int8"] = {"path": quantized.path, "seconds": time.perf_counter() - started,
                              "size_bytes": quantized.size_bytes, "settings": quantized.settings,
                              "exclude": quantized.exclude, "excluded_nodes": len(quantized.excluded_nodes),
                              "how": "mlcore quantize_int8_static on the fp32 model, train-split calibration"}

    yaml = yolo_dataset_yaml(data, out / "yolo_calibration")
    folder = out / "ultralytics"
    folder.mkdir(exist_ok=True)
    copy = folder / "best.pt"
    shutil.copyfile(student_pt, copy)
    ultralytics = ultralytics_module()
    started = time.perf_counter()
    with quiet_ultralytics():
        produced = ultralytics.YOLO(str(copy), task="detect").export(
            format="onnx", imgsz=args.imgsz, quantize=8, data=str(yaml), batch=1, dynamic=False, opset=17,
            simplify=False, device="cpu", verbose=False)
    seconds = time.perf_counter() - started
    target = out / "model.ultralytics_int8.onnx"
    shutil.move(str(produced), target)
    records["ultralytics_int8"] = {
        "path": target, "seconds": seconds, "size_bytes": target.stat().st_size,
        "how": f"ultralytics {ultralytics.__version__} YOLO.export(format='onnx', quantize=8 (what int8=True maps "
               "to), data=<train-split YAML>, batch=1, dynamic=False, opset=17, simplify=False): ONNX Runtime "
               "quantize_static defaults (QDQ, per-tensor, MinMax), only Conv/Gemm/MatMul quantized, no "
               "pre-processing"}
    records["calibration"] = {"split": "train", "images": len(train_images),
                              "same_images_for_both_int8": True}
    return records


# --- 3. accuracy and latency ---------------------------------------------------------------------------------------

def accuracy(paths: dict[str, Path], data: Path) -> dict[str, Any]:
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.mode_config import ModeConfig
    from mlcore.evaluation import evaluate_engine
    from mlcore.inference import load_engine

    mode = ModeConfig.read(data)
    dataset = CocoDataset(data / "test.json", Path(mode.images_root))
    scores = {}
    for name, path in paths.items():
        result = evaluate_engine(load_engine(path, device="cpu"), dataset, data / "test.json", mode.category_ids)
        scores[name] = {"map50_95": result.map50_95, "map50": result.map50, "seconds": result.seconds}
    scores["test_images"] = len(dataset)
    return scores


def _summary(times_ms: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(times_ms)
    return {"runs": int(values.size), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean()), "min_ms": float(values.min())}


def open_engine(path: Path, spinning: bool) -> Any:
    """An ONNXEngine on the CPU; `spinning=False` sets ONNX Runtime's `session.intra_op.allow_spinning` to 0.

    With spinning on (ONNX Runtime's default), a session's idle threads busy-wait after each run; interleaved
    sessions then compete with the previous one's spinning threads on this 2-core machine, which roughly doubled
    every model's latency when measured (the ratios moved less). Off, the round-robin measures each model alone.
    """
    from mlcore.inference import ONNXEngine

    return ONNXEngine(path, device="cpu", spinning=spinning)


def interleaved_latency(paths: dict[str, Path], images: list[Path], rounds: int, warmup: int,
                        spinning: bool) -> dict[str, Any]:
    """Round-robin at batch 1: for each image, every model once (the first one rotates), for `predict` (end to
    end on a decoded RGB array) and then for `forward` (ONNX Runtime alone on the letterboxed array)."""
    from mlcore.inference import letterbox_preprocessor
    from mlcore.preprocess import load_rgb

    engines = {name: open_engine(path, spinning) for name, path in paths.items()}
    names = list(engines)
    rgbs = [load_rgb(path) for path in images]
    letterbox = letterbox_preprocessor(engines[names[0]].imgsz)
    pixels = [letterbox([rgb]).pixel_values.numpy() for rgb in rgbs]
    feeds = {name: (engine.session, engine.session.get_inputs()[0].name) for name, engine in engines.items()}
    for _ in range(warmup):
        for name, engine in engines.items():
            engine.predict(rgbs[0])
            feeds[name][0].run(None, {feeds[name][1]: pixels[0]})
    predict_ms: dict[str, list[float]] = {name: [] for name in names}
    forward_ms: dict[str, list[float]] = {name: [] for name in names}
    detections: dict[str, list[int]] = {name: [] for name in names}
    step = 0
    started_load = loads()
    started = time.perf_counter()
    for _ in range(rounds):
        for index, rgb in enumerate(rgbs):
            order = names[step % len(names):] + names[:step % len(names)]
            step += 1
            for name in order:
                begin = time.perf_counter()
                found = engines[name].predict(rgb)
                predict_ms[name].append((time.perf_counter() - begin) * 1000.0)
                detections[name].append(len(found[0].scores))
            for name in order:
                session, input_name = feeds[name]
                begin = time.perf_counter()
                session.run(None, {input_name: pixels[index]})
                forward_ms[name].append((time.perf_counter() - begin) * 1000.0)
    result: dict[str, Any] = {
        "images": len(images), "rounds": rounds, "warmup_calls_per_model": warmup,
        "onnxruntime_spinning": spinning,
        "seconds": time.perf_counter() - started, "load_average_before": started_load, "load_average_after": loads(),
        "predict": {name: _summary(predict_ms[name]) for name in names},
        "forward": {name: _summary(forward_ms[name]) for name in names},
        "mean_detections_conf_0.25": {name: statistics.fmean(detections[name]) for name in names},
    }
    # Paired ratios: each (round, image) puts the models seconds apart, so their ratio barely feels machine drift.
    for kind, table in (("predict", predict_ms), ("forward", forward_ms)):
        result[kind]["paired_median_ratio"] = {
            f"mlcore_int8/{other}": statistics.median(a / b for a, b in zip(table["mlcore_int8"], table[other]))
            for other in ("fp32", "ultralytics_int8") if other in table}
    return result


def sequential_latency(paths: dict[str, Path], images: list[Path], runs: int) -> dict[str, Any]:
    """Cross-check: `benchmark_speed` per model, one after the other (batch 1, 3 warm-up calls), with the engines
    exactly as `load_engine` opens them (ONNX Runtime's default spinning on). Models follow each other in time, so
    machine drift is not shared: read its ratios as a second opinion."""
    from mlcore.evaluation import benchmark_speed
    from mlcore.inference import load_engine
    from mlcore.preprocess import load_rgb

    rgbs = [load_rgb(path) for path in images]
    speeds: dict[str, Any] = {"onnxruntime_spinning": True}
    for name, path in paths.items():
        speed = benchmark_speed(load_engine(path, device="cpu"), rgbs, warmup=3, runs=runs, batch_sizes=(1,),
                                name=name).at(1)
        speeds[name] = {"p50_ms": speed.p50_ms, "p95_ms": speed.p95_ms, "mean_ms": speed.mean_ms,
                        "runs": speed.runs, "load_average_after": loads()}
    speeds["ratios_p50"] = {f"mlcore_int8/{other}": speeds["mlcore_int8"]["p50_ms"] / speeds[other]["p50_ms"]
                            for other in ("fp32", "ultralytics_int8")}
    return speeds


# --- 4. teachers vs student ----------------------------------------------------------------------------------------

def teachers_vs_student(paths: dict[str, Path], images: list[Path], class_names: list[str],
                        args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mlcore.preprocess import load_rgb
    from mlcore.teachers import load_grounding_dino, load_sam
    from mlcore.teachers.grounded_sam import GroundedSAM

    rgbs = [load_rgb(path) for path in images]
    threads_found = torch.get_num_threads()
    torch.set_num_threads(args.torch_threads)  # ultralytics' exporter leaves torch at cpu_count - 1 (1 here)
    started = time.perf_counter()
    dino = load_grounding_dino(args.dino_preset, random_init=True)
    sam = load_sam(args.sam_preset, random_init=True)
    load_seconds = time.perf_counter() - started
    teachers = GroundedSAM(class_names, grounding_dino=dino, sam=sam, box_threshold=args.box_threshold,
                           text_threshold=0.0)
    load_before = loads()
    per_image = []
    boxes = []
    for rgb in rgbs:
        begin = time.perf_counter()
        prediction = teachers.predict(rgb)[0]
        per_image.append(time.perf_counter() - begin)
        boxes.append(len(prediction.boxes))
    load_after = loads()
    del teachers, dino, sam
    gc.collect()

    student = {}
    engines = {name: open_engine(paths[name], args.spinning) for name in ("fp32", "mlcore_int8")}
    for engine in engines.values():
        for _ in range(3):
            engine.predict(rgbs[0])
    times: dict[str, list[float]] = {name: [] for name in engines}
    for run in range(args.student_runs):
        for name in (list(engines) if run % 2 == 0 else list(engines)[::-1]):
            for rgb in rgbs:
                begin = time.perf_counter()
                engines[name].predict(rgb)
                times[name].append(time.perf_counter() - begin)
    teacher_seconds = statistics.fmean(per_image)
    for name, values in times.items():
        p50 = statistics.median(values)
        student[name] = {"p50_ms": p50 * 1000.0, "runs": len(values),
                         "teacher_over_student": teacher_seconds / p50}
    return {
        "teachers": {"grounding_dino": args.dino_preset, "sam": args.sam_preset,
                     "weights": "random_init (full-size architectures; speed does not depend on the weights)",
                     "torch_threads": torch.get_num_threads(),
                     "torch_threads_found": threads_found},
        "images": [path.name for path in images], "image_size": list(rgbs[0].shape[1::-1]),
        "class_names": class_names, "box_threshold": args.box_threshold,
        "load_seconds": load_seconds,
        "teacher_seconds_per_image": per_image, "teacher_mean_seconds": teacher_seconds,
        "teacher_boxes_per_image": boxes, "load_average_before": load_before, "load_average_after": load_after,
        "teacher_timing": "GroundedSAM.predict on one decoded image, end to end (DINO preprocessing + forward + "
                          "selection, SAM encoder + mask decoding per box); no warm-up call, 1 timed run per image",
        "student": student,
        "student_timing": "ONNXEngine.predict on the same decoded images, batch 1, end to end; 3 warm-up calls, "
                          "then runs alternating the model order; p50",
        "onnxruntime_spinning": args.spinning,
    }


# --- the run -------------------------------------------------------------------------------------------------------

def goals(scores: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for basis in ("predict", "forward"):
        p50 = {name: latency[basis][name]["p50_ms"] for name in MODELS}
        for other, key in (("fp32", "latency_vs_fp32"), ("ultralytics_int8", "latency_vs_ultralytics_int8")):
            value = p50["mlcore_int8"] / p50[other]
            table[f"{key}_{basis}"] = {"value": value, "goal": GOALS[key], "met": value <= GOALS[key],
                                       "paired_median": latency[basis]["paired_median_ratio"][f"mlcore_int8/{other}"],
                                       "what": f"mlcore INT8 p50 / {other} p50, `{basis}` latency at batch 1"}
    drop = (scores["fp32"]["map50_95"] - scores["mlcore_int8"]["map50_95"]) * 100.0
    table["map50_95_drop_points"] = {"value": drop, "goal": GOALS["map50_95_drop_points"],
                                     "met": drop <= GOALS["map50_95_drop_points"],
                                     "what": "fp32 minus mlcore INT8 mAP50-95 on the test split, in points"}
    table["ultralytics_int8_drop_points"] = {
        "value": (scores["fp32"]["map50_95"] - scores["ultralytics_int8"]["map50_95"]) * 100.0,
        "what": "reference: fp32 minus ultralytics INT8 mAP50-95, in points"}
    table["judged_on"] = "predict (end to end, what a user of engine.predict waits for); forward shown too"
    return table


def print_table(record: dict[str, Any]) -> None:
    latency, scores = record["latency"]["interleaved"], record["accuracy"]
    print(f"\n{'model':<18}{'mAP50-95':>10}{'predict p50':>13}{'p95':>9}{'forward p50':>13}{'p95':>9}{'MB':>8}",
          file=sys.stderr)
    for name in MODELS:
        print(f"{name:<18}{scores[name]['map50_95']:>10.4f}{latency['predict'][name]['p50_ms']:>13.1f}"
              f"{latency['predict'][name]['p95_ms']:>9.1f}{latency['forward'][name]['p50_ms']:>13.1f}"
              f"{latency['forward'][name]['p95_ms']:>9.1f}{record['exports'][name]['size_bytes'] / 1e6:>8.2f}",
              file=sys.stderr)
    for key, goal in record["goals"].items():
        if isinstance(goal, dict) and "met" in goal:
            print(f"{key}: {goal['value']:.3f} (goal {goal['goal']}) {'met' if goal['met'] else 'NOT met'}",
                  file=sys.stderr)
    teacher = record.get("teacher_vs_student")
    if teacher:
        print(f"teachers {teacher['teacher_mean_seconds']:.2f} s/image; teacher/student: "
              + ", ".join(f"{name} {entry['teacher_over_student']:.0f}x" for name, entry in teacher["student"].items()),
              file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a trained student .pt (default: train one here)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--images", type=int, default=80, help="generated images, split " + SPLIT)
    parser.add_argument("--image-size", default="640x480", help="generated images' WxH")
    parser.add_argument("--epochs", type=int, default=30, help="student training budget")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calibration-images", type=int, default=100, help="at most; from the train split")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes over the test images")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sequential-runs", type=int, default=20)
    parser.add_argument("--teacher-images", type=int, default=2)
    parser.add_argument("--student-runs", type=int, default=10, help="student runs per teacher image")
    parser.add_argument("--dino-preset", default="grounding_dino_swint")
    parser.add_argument("--sam-preset", default="sam_vit_h")
    parser.add_argument("--box-threshold", type=float, default=0.3)
    parser.add_argument("--no-teachers", action="store_true", help="skip step 4")
    parser.add_argument("--spinning", action="store_true",
                        help="keep ONNX Runtime's thread spinning in the interleaved and teacher comparisons")
    parser.add_argument("--torch-threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads for training and the teachers (default: the usable CPUs)")
    parser.add_argument("--work", type=Path, default=None, help="keep the working files here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="320 px, 1 epoch, 20 images, tiny teachers")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.imgsz, args.images, args.epochs, args.image_size = 320, 20, 1, "320x240"
        args.rounds, args.sequential_runs, args.teacher_images, args.student_runs = 2, 5, 1, 3
        args.dino_preset = args.sam_preset = "tiny"
    output = args.output or (QUICK_RESULT if args.quick else RESULT)
    width, height = (int(side) for side in args.image_size.lower().split("x"))
    work = args.work or Path(tempfile.mkdtemp(prefix="mlcore-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(EXPORT_PACKAGES, gpu=None)
    record: dict[str, Any] = {"machine": machine, "code": code_version(), "quick": args.quick,
                              "settings": {key: str(value) if isinstance(value, Path) else value
                                           for key, value in vars(args).items()},
                              "goals_asked": GOALS, "phases": []}

    def phase(name: str, started: float) -> None:
        record["phases"].append({"name": name, "seconds": round(time.perf_counter() - started, 1),
                                 "load_average_after": loads(), "torch_threads_after": torch.get_num_threads()})
        print(f"[bench_export] {name} done in {time.perf_counter() - started:.0f} s, load {loads()}",
              file=sys.stderr, flush=True)

    import torch

    torch.set_num_threads(args.torch_threads)
    try:
        from mlcore.data.mode_config import ModeConfig

        started = time.perf_counter()
        data = prepare(work, args.images, (width, height), seed=0)
        mode = ModeConfig.read(data)
        record["data"] = {"generator": "mlcore.data.demo boxes", "images": args.images, "image_size": [width, height],
                          "split": SPLIT, "seed": 0, "classes": mode.class_names}
        if args.model is not None:
            record["student"] = {"path": str(args.model), "trained_here": False}
            student_pt = args.model
        else:
            trained = train_student(data, work, args)
            student_pt = trained["path"]
            record["student"] = {**trained, "path": str(student_pt)}
        phase("student", started)

        started = time.perf_counter()
        exports = export_models(student_pt, data, work / "exports", args)
        paths = {name: exports[name]["path"] for name in MODELS}
        record["exports"] = {name: ({**entry, "path": entry["path"].name} if "path" in entry else entry)
                             for name, entry in exports.items()}
        phase("exports", started)
        torch.set_num_threads(args.torch_threads)  # ultralytics' exporter set cpu_count - 1; a fresh process has more

        started = time.perf_counter()
        record["accuracy"] = accuracy(paths, data)
        phase("accuracy", started)

        from mlcore.data.coco_dataset import CocoDataset

        test = CocoDataset(data / "test.json", Path(mode.images_root))
        test_images = [test[index].image_path for index in range(len(test))]
        started = time.perf_counter()
        interleaved = interleaved_latency(paths, test_images, args.rounds, args.warmup, args.spinning)
        record["latency"] = {"batch": 1, "threads": "ONNX Runtime default (intra-op = physical cores)",
                             "interleaved": interleaved,
                             "sequential": sequential_latency(paths, test_images, args.sequential_runs)}
        record["goals"] = goals(record["accuracy"], interleaved)
        record["goals"]["sequential_cross_check"] = record["latency"]["sequential"]["ratios_p50"]
        phase("latency", started)

        if not args.no_teachers:
            started = time.perf_counter()
            record["teacher_vs_student"] = teachers_vs_student(paths, test_images[:args.teacher_images],
                                                               mode.class_names, args)
            phase("teachers", started)
    finally:
        record["machine"]["load_average_at_end"] = loads()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2, default=str) + "\n")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record, indent=2, default=str))
    print_table(record)
    print(f"written: {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
