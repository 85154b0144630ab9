"""End to end on CPU: mlcore's ONNX engine (fp32 and INT8) against ultralytics' own `YOLO(model.onnx).predict`.

    python benchmarks/bench_end_to_end.py                      # train four small students, export, measure (~70 min)
    python benchmarks/bench_end_to_end.py --work /tmp/e2e      # keep (and on a rerun reuse) students and exports
    python benchmarks/bench_end_to_end.py --detect-model d.pt --segment-model s.pt   # existing students
    python benchmarks/bench_end_to_end.py --quick              # smoke run: 1 epoch, few images, 1 round (~2 min)

In one run, per task (detect: YOLOv8n, segment: YOLOv8n-seg, 3 classes) and per activation (silu: ultralytics'
architecture; relu: mlcore's "-relu" student, the same yaml with `activation: nn.ReLU()`; --activations):
1. a student lightly trained here with ultralytics' own trainer on generated shapes (`mlcore.data.demo`, 640x480,
   polygons; 30 epochs at 480), so that at conf 0.25 it finds the objects (a few boxes per image, as a real model
   does; random weights give none or hundreds);
2. one fp32 ONNX file, `export_to_onnx(dynamic_batch=False)`: static batch 1 at imgsz 640, ultralytics' own default
   export layout, which both sides load as it is; and mlcore's INT8 (`quantize_int8_static`, calibrated on the
   training images) from it. A dynamic-batch copy (what `mlcore optimize` writes by default) for the batched runs.
   And ultralytics' own export of the same student (`YOLO(pt).export(format="onnx")`, same size and opset): mlcore's
   file has the box head's Softmax rewritten (graph_rewrites.py), so the peer a user of ultralytics alone would
   run is measured too;
3. on the same 50 held-out images (640x480, decoded once beforehand: ultralytics gets the BGR array cv2 gives,
   mlcore the RGB array), round-robin per image with the first pipeline rotating: ultralytics
   `YOLO(fp32.onnx, task=...).predict(bgr, imgsz=640, conf=0.25, iou=0.7, verbose=False)`, mlcore
   `ONNXEngine(fp32).predict(rgb)` and `ONNXEngine(int8).predict(rgb)`, and ultralytics' predict on its own export,
   each end to end; then each
   ONNX Runtime session alone on the letterboxed array. Medians over all rounds, paired per-image ratios, and the
   agreement of mlcore's detections with ultralytics' (boxes, masks) on every image. For a ReLU student,
   ultralytics' predict on the SiLU student's fp32 file joins the round-robin (the default model a user of
   ultralytics would run instead). Then the COCO mAP of the fp32 and INT8 files on the same images;
4. (SiLU students) folder throughput (images/s, medians over rounds, order alternating): ultralytics
   `predict(source=folder, stream=True)` (decodes, predicts, builds Results; writes nothing) against `infer_folder`
   (what `mlcore infer` runs: decodes, predicts, draws and writes every overlay, writes predictions.json and
   inference.json; batch 8, 2 worker threads), each pair on one file: the static batch-1 file (ultralytics
   defaults), and the dynamic-batch file (ultralytics with batch=8, rect=False).

Threads: both sides get the same ONNX Runtime intra-op thread count (--threads, default 2 = this machine's cores):
ultralytics' session is replaced, after its first call, by one with the same options as mlcore's (ultralytics'
own default leaves the count to ONNX Runtime); ONNX Runtime's thread spinning is off on both (--spinning: on on
both): with it on, the idle threads of one session busy-wait while the next pipeline runs, which on 2 cores slows
whichever runs next; torch threads are set to the same count. Goals (issue "an edge model that is fast end to
end"): mlcore INT8 end to end <= 0.4x ultralytics fp32 predict, mlcore fp32 <= 0.8x, `mlcore infer` images/s >=
ultralytics' predict over the folder. Results: benchmarks/results/end_to_end_cpu.json (--quick:
benchmarks/.cache/end_to_end_cpu_quick.json).
"""

from __future__ import annotations

import argparse
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

RESULT = HERE / "results" / "end_to_end_cpu.json"
QUICK_RESULT = HERE / ".cache" / "end_to_end_cpu_quick.json"
PACKAGES = ("onnxruntime", "onnx", "ultralytics", "torch", "torchvision", "numpy", "opencv-python",
            "opencv-python-headless", "pillow")
GOALS = {"mlcore_int8_vs_ultralytics_fp32": 0.4, "mlcore_fp32_vs_ultralytics_fp32": 0.8,
         "infer_folder_vs_ultralytics_images_per_s": 1.0}
TASKS = {"detect": ("yolov8n.yaml", "detection_only"), "segment": ("yolov8n-seg.yaml", "detection_and_segmentation")}
IOU = 0.7


# --- 1. data and students ------------------------------------------------------------------------------------------

def make_images(root: Path, count: int, seed: int, negatives: int) -> Path:
    """Generated shapes, 640x480, boxes and polygons; returns the annotation file."""
    from mlcore.data.demo import make_demo_dataset

    return make_demo_dataset(root, mode="both", num_images=count, negatives=negatives, image_size=(640, 480),
                             seed=seed)


def yolo_dataset(annotations: Path, root: Path) -> Path:
    """ultralytics' layout over the generated images (links) with polygon labels (boxes follow from them)."""
    data = json.loads(annotations.read_text())
    index_of = {category["id"]: index for index, category in enumerate(data["categories"])}
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rows: dict[int, list[str]] = {image["id"]: [] for image in data["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    for annotation in data["annotations"]:
        width, height = sizes[annotation["image_id"]]
        polygon = annotation["segmentation"][0]
        points = " ".join(f"{value / (width if position % 2 == 0 else height):.6f}"
                          for position, value in enumerate(polygon))
        rows[annotation["image_id"]].append(f"{index_of[annotation['category_id']]} {points}")
    for image in data["images"]:
        source = annotations.parent / "images" / image["file_name"]
        link = images / image["file_name"]
        if not link.exists():
            link.symlink_to(source.resolve())
        lines = rows[image["id"]]
        (labels / f"{Path(image['file_name']).stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    names = "\n".join(f"  {index}: {category['name']}" for index, category in enumerate(data["categories"]))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n{names}\n")
    return yaml


def architecture(task: str, activation: str, work: Path) -> str:
    """ultralytics' yaml for the task; for ReLU a copy with `activation: nn.ReLU()` (named yolov8n-...: ultralytics
    reads the scale from the file name)."""
    name = TASKS[task][0]
    if activation == "silu":
        return name
    from ultralytics.nn.tasks import yaml_model_load

    config = {key: value for key, value in yaml_model_load(name).items() if key != "yaml_file"}
    target = work / name.replace(".yaml", f"-{activation}.yaml")
    target.write_text(json.dumps({**config, "activation": "nn.ReLU()"}, indent=1))  # JSON is YAML
    return str(target)


def train_student(task: str, activation: str, yaml: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A YOLOv8n(-seg) from its architecture file, trained by ultralytics' own trainer for a few epochs."""
    from mlcore.students.ultralytics_setup import quiet_ultralytics, ultralytics_module

    ultralytics = ultralytics_module()
    from ultralytics.nn.modules import Conv

    best = out / "train" / "weights" / "last.pt"
    info = out / "training.json"
    if best.is_file() and info.is_file():
        return {**json.loads(info.read_text()), "path": best, "reused": True}
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model_yaml = architecture(task, activation, out)
    default_act = Conv.default_act  # ultralytics applies a yaml's activation to this class attribute
    try:
        with quiet_ultralytics():
            model = ultralytics.YOLO(model_yaml, task=task)
            model.train(data=str(yaml), epochs=args.epochs, imgsz=args.train_imgsz, batch=args.batch, workers=0,
                        device="cpu", amp=False, plots=False, val=False, seed=0, deterministic=True,
                        project=str(out), name="train", exist_ok=True, verbose=False, patience=0)
    finally:
        Conv.default_act = default_act
    record = {"trained_here": True, "seconds": time.perf_counter() - started, "epochs": args.epochs,
              "imgsz": args.train_imgsz, "batch": args.batch, "images": args.train_images, "activation": activation,
              "recipe": f"ultralytics YOLO('{Path(model_yaml).name}').train on the generated shapes (polygon labels), "
                        "default augmentation, amp off, seed 0, last epoch's weights"}
    info.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "path": best, "reused": False}


# --- 2. exports ----------------------------------------------------------------------------------------------------

def export(student_pt: Path, train_images: list[Path], out: Path, calibration: int) -> dict[str, Any]:
    from mlcore.optimization import CalibrationReader, export_to_onnx, quantize_int8_static

    out.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": out / "model.onnx", "fp32_dynamic_batch": out / "model.dynamic.onnx",
             "mlcore_int8": out / "model.int8.onnx", "ultralytics_export": out / "ultralytics" / "student.onnx"}
    if all(path.is_file() for path in paths.values()):
        return {"paths": paths, "reused": True}
    ultralytics_export(student_pt, paths["ultralytics_export"])
    images = [str(path) for path in train_images[:calibration]]
    fp32 = export_to_onnx(student_pt, paths["fp32"], imgsz=640, opset=17, dynamic_batch=False,
                          parity_images=images[:4])
    export_to_onnx(student_pt, paths["fp32_dynamic_batch"], imgsz=640, opset=17, dynamic_batch=True,
                   parity_images=images[:4])
    reader = CalibrationReader.for_model(fp32.path, [Path(image) for image in images])
    quantized = quantize_int8_static(fp32.path, paths["mlcore_int8"], reader)
    return {"paths": paths, "reused": False, "fp32_parity_max_abs_diff": fp32.parity.max_abs_diff
            if fp32.parity else None, "int8_settings": quantized.settings,
            "sizes_bytes": {name: path.stat().st_size for name, path in paths.items()}}


def ultralytics_export(student_pt: Path, target: Path) -> None:
    """The file a user of ultralytics alone would run: its own exporter, same size and opset as mlcore's (simplify
    off: onnxslim is not a dependency, and ultralytics would try to install it)."""
    from mlcore.students.ultralytics_setup import ultralytics_module

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(student_pt, target.with_suffix(".pt"))
    written = ultralytics_module().YOLO(str(target.with_suffix(".pt"))).export(format="onnx", imgsz=640, opset=17,
                                                                                simplify=False, dynamic=False)
    assert Path(written) == target, written


# --- 3. per-image latency ------------------------------------------------------------------------------------------

def ultralytics_model(path: Path, task: str, args: argparse.Namespace, warm_image: Any, **options: Any) -> Any:
    """YOLO(path) with its ONNX Runtime session rebuilt with mlcore's options (threads, spinning); options: extra
    predict arguments for the warm-up calls."""
    import onnxruntime

    from mlcore.students.ultralytics_setup import ultralytics_module

    model = ultralytics_module().YOLO(str(path), task=task)
    model.predict(warm_image, imgsz=640, conf=args.conf, iou=IOU, verbose=False, **options)  # builds the backend
    backend = _onnx_backend(model)
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = args.threads
    if not args.spinning:
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    backend.session = onnxruntime.InferenceSession(str(path), sess_options=session_options,
                                                   providers=["CPUExecutionProvider"])
    model.predict(warm_image, imgsz=640, conf=args.conf, iou=IOU, verbose=False, **options)
    assert _onnx_backend(model).session is backend.session
    return model


def engine(path: Path, args: argparse.Namespace) -> Any:
    from mlcore.inference import ONNXEngine

    return ONNXEngine(path, device="cpu", threads=args.threads, spinning=args.spinning)


def _onnx_backend(model: Any) -> Any:
    """The object that owns ultralytics' ONNX Runtime session (AutoBackend's `backend` in 8.4; AutoBackend itself in
    older versions). Owns: `session` in its own attributes (AutoBackend forwards attribute reads to its backend,
    so setting `session` on AutoBackend would leave the session it runs unchanged)."""
    autobackend = model.predictor.model
    for candidate in (getattr(autobackend, "backend", None), autobackend):
        if candidate is not None and "session" in vars(candidate):
            return candidate
    raise RuntimeError("could not find ultralytics' ONNX Runtime session to set its threads")


def per_image_latency(paths: dict[str, Path], task: str, images: list[Path], args: argparse.Namespace,
                      silu_fp32: Path | None = None) -> dict[str, Any]:
    """silu_fp32: for a ReLU student, the SiLU student's fp32 file, which ultralytics' predict also runs in the
    round-robin (the model a user of ultralytics' default architecture would have)."""
    import cv2
    import numpy as np

    from mlcore.preprocess.yolo_letterbox import yolo_letterbox

    bgrs = [cv2.imread(str(path)) for path in images]
    rgbs = [np.ascontiguousarray(bgr[:, :, ::-1]) for bgr in bgrs]
    engines = {"mlcore_fp32": engine(paths["fp32"], args),
               "mlcore_int8": engine(paths["mlcore_int8"], args)}
    ultralytics = ultralytics_model(paths["fp32"], task, args, bgrs[0])
    own_export = ultralytics_model(paths["ultralytics_export"], task, args, bgrs[0])
    silu_student = ultralytics_model(silu_fp32, task, args, bgrs[0]) if silu_fp32 else None
    letterboxed = [yolo_letterbox(640)([rgb])[0] for rgb in rgbs]

    def ultralytics_predict(model: Any) -> Any:
        return lambda index: len(model.predict(bgrs[index], imgsz=640, conf=args.conf, iou=IOU,
                                               verbose=False)[0].boxes)

    predict = {
        "ultralytics_fp32": ultralytics_predict(ultralytics),
        "ultralytics_fp32_own_export": ultralytics_predict(own_export),
        "mlcore_fp32": lambda index: len(engines["mlcore_fp32"].predict(rgbs[index], conf=args.conf, iou=IOU)[0]),
        "mlcore_int8": lambda index: len(engines["mlcore_int8"].predict(rgbs[index], conf=args.conf, iou=IOU)[0]),
    }
    feeds = {"ultralytics_fp32": _onnx_backend(ultralytics).session,
             "ultralytics_fp32_own_export": _onnx_backend(own_export).session,
             "mlcore_fp32": engines["mlcore_fp32"].session, "mlcore_int8": engines["mlcore_int8"].session}
    if silu_student is not None:
        predict["ultralytics_fp32_silu_student"] = ultralytics_predict(silu_student)
        feeds["ultralytics_fp32_silu_student"] = _onnx_backend(silu_student).session
    forward = {name: (lambda index, s=s: s.run(None, {s.get_inputs()[0].name: letterboxed[index]}))
               for name, s in feeds.items()}
    names = list(predict)
    for _ in range(args.warmup):
        for name in names:
            predict[name](0)
            forward[name](0)
    times: dict[str, dict[str, list[float]]] = {"predict": {name: [] for name in names},
                                                 "session": {name: [] for name in names}}
    detections: dict[str, list[int]] = {name: [] for name in names}
    step, load_before, started = 0, loads(), time.perf_counter()
    for _ in range(args.rounds):
        for index in range(len(images)):
            order = names[step % len(names):] + names[:step % len(names)]
            step += 1
            for name in order:
                begin = time.perf_counter()
                found = predict[name](index)
                times["predict"][name].append((time.perf_counter() - begin) * 1000.0)
                detections[name].append(found)
            for name in order:
                begin = time.perf_counter()
                forward[name](index)
                times["session"][name].append((time.perf_counter() - begin) * 1000.0)
    result: dict[str, Any] = {"images": len(images), "rounds": args.rounds, "warmup_calls": args.warmup,
                              "seconds": time.perf_counter() - started, "load_average_before": load_before,
                              "load_average_after": loads()}
    for kind, table in times.items():
        result[kind] = {name: _summary(values) for name, values in table.items()}
        result[kind]["paired_median_ratio"] = {
            f"{name}/ultralytics_fp32": statistics.median(a / b for a, b in zip(table[name],
                                                                                table["ultralytics_fp32"]))
            for name in names if name != "ultralytics_fp32"}
    result["overhead_ms"] = {name: result["predict"][name]["p50_ms"] - result["session"][name]["p50_ms"]
                             for name in names}
    result["mean_detections"] = {name: statistics.fmean(values) for name, values in detections.items()}
    result["agreement"] = agreement(ultralytics, engines["mlcore_fp32"], bgrs, rgbs, args)
    return result


def agreement(ultralytics: Any, engine: Any, bgrs: list[Any], rgbs: list[Any], args: argparse.Namespace
              ) -> dict[str, Any]:
    """mlcore fp32 against ultralytics fp32 on the same file: same detections, boxes within how many pixels, and
    masks (ultralytics' input-frame masks mapped out of the letterbox as mlcore's reference maps them)."""
    import numpy as np
    import torch

    from mlcore.preprocess.yolo_letterbox import yolo_letterbox

    same_count, box_diff, mask_iou, mask_pixels_differing, mask_pixels = 0, 0.0, [], 0, 0
    for bgr, rgb in zip(bgrs, rgbs):
        theirs = ultralytics.predict(bgr, imgsz=640, conf=args.conf, iou=IOU, verbose=False)[0]
        ours = engine.predict(rgb, conf=args.conf, iou=IOU)[0]
        boxes = theirs.boxes.xyxy.cpu().numpy()
        if len(boxes) != len(ours):
            continue
        same_count += 1
        if len(ours):
            box_diff = max(box_diff, float(np.abs(ours.boxes.numpy() - boxes).max()))
            if ours.masks is not None and theirs.masks is not None:
                meta = yolo_letterbox(640).plan(*rgb.shape[:2])
                their_masks = meta.masks_from_model(torch.as_tensor(theirs.masks.data).float().cpu()).numpy()
                for mine, other in zip(ours.masks.numpy(), their_masks):
                    union = np.logical_or(mine, other).sum()
                    mask_iou.append(float(np.logical_and(mine, other).sum() / union) if union else 1.0)
                    mask_pixels_differing += int((mine != other).sum())
                    mask_pixels += int(other.sum())
    return {"images_with_same_count": same_count, "images": len(bgrs), "max_box_diff_px": box_diff,
            "masks_compared": len(mask_iou), "min_mask_iou": min(mask_iou) if mask_iou else None,
            "mean_mask_iou": statistics.fmean(mask_iou) if mask_iou else None,
            "mask_pixels_differing": mask_pixels_differing, "mask_pixels": mask_pixels}


def accuracy(paths: dict[str, Path], annotations: Path) -> dict[str, Any]:
    """COCO mAP (pycocotools, mlcore's evaluation at conf 0.001) of the fp32 and INT8 files on the measured images:
    what INT8 and the activation cost in accuracy."""
    from mlcore.optimization import evaluate_model_file

    scores = {name: evaluate_model_file(paths[name], annotations, val_images=annotations.parent / "images")
              for name in ("fp32", "mlcore_int8")}
    keys = [key for key in ("map50_95", "map50", "mask_map50_95", "mask_map50") if key in scores["fp32"]]
    return {**{name: {key: round(values[key], 4) for key in keys} for name, values in scores.items()},
            "int8_minus_fp32": {key: round(scores["mlcore_int8"][key] - scores["fp32"][key], 4) for key in keys}}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"runs": len(values), "p50_ms": statistics.median(values),
            "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "min_ms": ordered[0],
            "mean_ms": statistics.fmean(values)}


# --- 4. folder throughput ------------------------------------------------------------------------------------------

def folder_throughput(paths: dict[str, Path], task: str, folder: Path, work: Path, args: argparse.Namespace
                      ) -> dict[str, Any]:
    """images/s over the folder, each pipeline once per round (order alternating), medians; pairs on one file."""
    import cv2

    from mlcore.inference import infer_folder

    count = len(list(folder.iterdir()))
    warm = cv2.imread(str(next(folder.iterdir())))
    batched = {"batch": args.folder_batch, "rect": False}  # rect=False: ultralytics' own letterbox keeps 640x640
    peers = {"ultralytics_fp32_stream": (ultralytics_model(paths["fp32"], task, args, warm), {}),
             "ultralytics_fp32_dynamic_batch_stream": (
                 ultralytics_model(paths["fp32_dynamic_batch"], task, args, warm, rect=False), batched)}
    engines = {"infer_folder_fp32": engine(paths["fp32"], args),
               "infer_folder_fp32_dynamic_batch": engine(paths["fp32_dynamic_batch"], args),
               "infer_folder_int8": engine(paths["mlcore_int8"], args)}
    runners: dict[str, Any] = {}
    for name, (model, options) in peers.items():
        runners[name] = (lambda model=model, options=options: [
            None for _ in model.predict(source=str(folder), stream=True, imgsz=640, conf=args.conf, iou=IOU,
                                        verbose=False, **options)])
    for name, runner in engines.items():
        runners[name] = (lambda runner=runner, out=work / f"infer_{name}": infer_folder(
            runner, folder, out, conf=args.conf, iou=IOU, batch_size=args.folder_batch))
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for name in names:  # warm-up pass
        runners[name]()
    load_before = loads()
    for round_index in range(args.folder_rounds):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            begin = time.perf_counter()
            runners[name]()
            seconds[name].append(time.perf_counter() - begin)
    rates = {name: count / statistics.median(values) for name, values in seconds.items()}
    pairs = {"infer_folder_fp32": "ultralytics_fp32_stream",
             "infer_folder_fp32_dynamic_batch": "ultralytics_fp32_dynamic_batch_stream"}
    return {"images": count, "rounds": args.folder_rounds, "batch_size": args.folder_batch,
            "load_average_before": load_before, "load_average_after": loads(), "seconds": seconds,
            "images_per_s": rates,
            "ratio_same_file": {name: rates[name] / rates[peer] for name, peer in pairs.items()},
            "ratio_to_ultralytics_default": {name: rate / rates["ultralytics_fp32_stream"]
                                             for name, rate in rates.items()},
            "how": {"ultralytics_fp32_stream": "YOLO(model.onnx).predict(source=folder, stream=True) on the static "
                                               "batch-1 file, ultralytics' defaults (batch 1)",
                    "ultralytics_fp32_dynamic_batch_stream": "the same on the dynamic-batch file with batch="
                                                             f"{args.folder_batch}, rect=False (without it "
                                                             "ultralytics letterboxes to 640x480, which a file with a "
                                                             "fixed 640x640 input refuses)",
                    "infer_folder_*": f"mlcore.inference.infer_folder(engine, folder, out, batch_size="
                                      f"{args.folder_batch}) with its default 2 worker threads: overlays, "
                                      "predictions.json, inference.json written"}}


# --- the run -------------------------------------------------------------------------------------------------------

def goals(per_task: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    peers = (("ultralytics_fp32", "", "on mlcore's fp32 file"),
             ("ultralytics_fp32_own_export", ".own_export", "on its own export"),
             ("ultralytics_fp32_silu_student", ".vs_silu_student",
              "on the SiLU student's fp32 file (ultralytics' default architecture)"))
    for task, record in per_task.items():
        latency, folder = record["latency"], record.get("folder")
        p50 = {name: entry["p50_ms"] for name, entry in latency["predict"].items() if isinstance(entry, dict)
               and "p50_ms" in entry}
        for name, key in (("mlcore_int8", "mlcore_int8_vs_ultralytics_fp32"),
                          ("mlcore_fp32", "mlcore_fp32_vs_ultralytics_fp32")):
            for peer, suffix, what in peers:
                if peer not in p50:
                    continue
                value = p50[name] / p50[peer]
                table[f"{task}.{key}{suffix}"] = {
                    "value": value, "goal": GOALS[key], "met": value <= GOALS[key],
                    "what": f"{name} predict p50 / ultralytics fp32 predict p50 {what}, end to end per image, "
                            "batch 1"}
        for name, value in (folder or {}).get("ratio_same_file", {}).items():
            key = "infer_folder_vs_ultralytics_images_per_s"
            table[f"{task}.{key}.{name}"] = {
                "value": value, "goal": GOALS[key], "met": value >= GOALS[key],
                "what": f"{name} images/s (writes overlays + COCO json) / ultralytics predict(stream=True) images/s "
                        "on the same file (writes nothing), fp32"}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detect-model", type=Path, default=None, help="a trained YOLOv8 detect .pt")
    parser.add_argument("--segment-model", type=Path, default=None, help="a trained YOLOv8-seg .pt")
    parser.add_argument("--tasks", default="detect,segment")
    parser.add_argument("--activations", default="silu,relu",
                        help="students per task: silu (ultralytics' architecture) and relu (mlcore's -relu variant; "
                             "measured per image, against the SiLU student's file too; no folder run)")
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--images", type=int, default=50, help="held-out images measured")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-imgsz", type=int, default=480,
                        help="training size (objects then appear at 0.75x their size at 640: within the scale "
                             "augmentation; 0.56x the cost of training at 640)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calibration-images", type=int, default=48)
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold, both sides")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op (and torch) threads, both sides")
    parser.add_argument("--spinning", action="store_true",
                        help="keep ONNX Runtime's thread spinning on (both sides); default off on both")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved passes over the images")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--folder-rounds", type=int, default=3)
    parser.add_argument("--folder-batch", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None, help="keep (and reuse) working files here")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 16 training / 8 measured images, 1 round")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.train_images, args.images, args.epochs, args.train_imgsz = 16, 8, 1, 320
        args.rounds, args.warmup, args.folder_rounds, args.calibration_images = 1, 1, 1, 8
    output = args.output or (QUICK_RESULT if args.quick else RESULT)
    work = args.work or Path(tempfile.mkdtemp(prefix="mlcore-bench-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "ultralytics"))
    os.environ.setdefault("XDG_CACHE_HOME", str(work / "cache"))

    import torch

    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {
        "machine": machine_info(PACKAGES, gpu=None), "code": code_version(), "quick": args.quick,
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "conf": args.conf, "iou": IOU, "goals_asked": GOALS,
        "threads": {"onnxruntime_intra_op": args.threads, "torch": args.threads,
                    "onnxruntime_spinning": args.spinning,
                    "how": "mlcore ONNXEngine(threads=N, spinning=S); ultralytics' session rebuilt with "
                           "intra_op_num_threads=N (and allow_spinning 0 unless S) after its first call; "
                           "torch.set_num_threads(N) in this process"},
        "phases": [], "tasks": {}}

    def phase(name: str, started: float) -> None:
        record["phases"].append({"name": name, "seconds": round(time.perf_counter() - started, 1),
                                 "load_average_after": loads()})
        print(f"[bench_end_to_end] {name} done in {time.perf_counter() - started:.0f} s, load {loads()}",
              file=sys.stderr, flush=True)

    try:
        started = time.perf_counter()
        train_annotations = make_images(work / "train_data", args.train_images, seed=0, negatives=2)
        measure_annotations = make_images(work / "measure_data", args.images, seed=1, negatives=2)
        train_images = sorted((train_annotations.parent / "images").iterdir())
        measure_folder = measure_annotations.parent / "images"
        measure_images = sorted(measure_folder.iterdir())
        yaml = yolo_dataset(train_annotations, work / "yolo")
        record["data"] = {"generator": "mlcore.data.demo (mode both)", "image_size": [640, 480],
                          "train_images": args.train_images, "measured_images": args.images,
                          "train_seed": 0, "measure_seed": 1}
        phase("data", started)
        for task in args.tasks.split(","):
            silu_fp32 = None
            for activation in args.activations.split(","):
                key = task if activation == "silu" else f"{task}_{activation}"
                given = args.detect_model if task == "detect" else args.segment_model
                given = given if activation == "silu" else None
                started = time.perf_counter()
                if given is not None:
                    student = {"path": given, "trained_here": False}
                else:
                    student = train_student(task, activation, yaml, work / f"student_{key}", args)
                phase(f"{key}: student", started)
                torch.set_num_threads(args.threads)  # ultralytics' trainer changes it
                started = time.perf_counter()
                exports = export(Path(student["path"]), train_images, work / f"export_{key}", args.calibration_images)
                phase(f"{key}: exports", started)
                torch.set_num_threads(args.threads)
                started = time.perf_counter()
                latency = per_image_latency(exports["paths"], task, measure_images, args,
                                            silu_fp32=silu_fp32 if activation != "silu" else None)
                phase(f"{key}: per-image latency", started)
                started = time.perf_counter()
                scores = accuracy(exports["paths"], measure_annotations)
                phase(f"{key}: accuracy", started)
                entry: dict[str, Any] = {
                    "activation": activation,
                    "student": {name: str(value) if isinstance(value, Path) else value
                                for name, value in student.items()},
                    "exports": {name: ({file: path.name for file, path in value.items()} if name == "paths" else value)
                                for name, value in exports.items()},
                    "latency": latency, "accuracy": scores}
                if activation == "silu":
                    silu_fp32 = exports["paths"]["fp32"]
                    started = time.perf_counter()
                    entry["folder"] = folder_throughput(exports["paths"], task, measure_folder, work, args)
                    phase(f"{key}: folder throughput", started)
                record["tasks"][key] = entry
        record["goals"] = goals(record["tasks"])
    finally:
        record["machine"]["load_average_at_end"] = loads()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2, default=str) + "\n")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(record)
    print(f"written: {output}", file=sys.stderr)


def print_table(record: dict[str, Any]) -> None:
    for task, entry in record["tasks"].items():
        latency = entry["latency"]
        print(f"\n{task}: per image, ms (p50)             predict   session   overhead   detections", file=sys.stderr)
        for name in latency["mean_detections"]:
            print(f"  {name:<33}{latency['predict'][name]['p50_ms']:>9.1f}{latency['session'][name]['p50_ms']:>10.1f}"
                  f"{latency['overhead_ms'][name]:>11.1f}{latency['mean_detections'][name]:>13.2f}", file=sys.stderr)
        for name, scores in entry["accuracy"].items():
            print(f"  accuracy {name:<24}" + "  ".join(f"{key} {value:.3f}" for key, value in scores.items()),
                  file=sys.stderr)
        for name, value in entry.get("folder", {}).get("images_per_s", {}).items():
            print(f"  folder {name:<40}{value:>8.1f} images/s", file=sys.stderr)
    for key, goal in record.get("goals", {}).items():
        print(f"{key}: {goal['value']:.3f} (goal {goal['goal']}) {'met' if goal['met'] else 'NOT met'}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
