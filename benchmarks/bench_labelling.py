"""Teacher labelling on CPU: where the time goes, what each speed-up buys, and what bf16 does to the labels.

    python benchmarks/bench_labelling.py            # full-size Swin-T DINO + SAM ViT-B (random weights), ~10 min
    python benchmarks/bench_labelling.py --quick    # tiny teachers: a smoke run of the whole path

Speed: the real labelling path (`TeacherTargetCache.fill`, batches of 2) on 640x480 images, full-size architectures
with random weights (speed does not depend on the weights), three variants in one run, each on fresh cache folders:
- `before`: fp32, and the image backbone recomputed for every prompt chunk (mlcore before this change);
- `fp32`: the backbone once per image batch, shared by every prompt chunk;
- `bf16`: the same with the forwards autocast to bf16 (what `teacher_precision: auto` picks on a CPU with native
  bf16; skipped, with the reason, where the CPU has none).
The prompt is the 80 COCO class names (several prompt chunks, as a real many-class dataset has). Per-module seconds
come from forward hooks (Swin backbone, BERT, fusion encoder, decoder, SAM image encoder, SAM mask decoder).

Labels: the shipped `shapes` teachers on the field domain's test-like images, fp32 vs bf16: COCO box and mask mAP
against the ground truth through `evaluate_teacher` (what `mlcore evaluate --teachers` runs).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
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

RESULT = HERE / "results" / "teacher_labelling_cpu.json"
COCO_NAMES = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
              "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
              "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
              "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
              "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
              "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
              "hair_drier toothbrush").replace("_", " ").split(" ")


def module_timers(dino, sam) -> tuple[dict[str, float], list]:
    """Seconds spent in each heavy module, from forward pre/post hooks."""
    seconds: dict[str, float] = collections.defaultdict(float)
    handles = []

    def watch(name: str, module) -> None:
        started: list[float] = []
        handles.append(module.register_forward_pre_hook(lambda *_: started.append(time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_: seconds.__setitem__(name, seconds[name] + time.perf_counter() - started.pop())))

    base = dino.model.model
    for name in ("backbone", "text_backbone", "encoder", "decoder"):
        watch(f"dino.{name}", getattr(base, name))
    watch("sam.vision_encoder", sam.model.vision_encoder)
    watch("sam.mask_decoder", sam.model.mask_decoder)
    return seconds, handles


def speed(work: Path, args: argparse.Namespace) -> dict:
    import torch

    from mlcore.data.demo import make_demo_dataset
    from mlcore.distill.label_cache import TeacherTargetCache
    from mlcore.teachers import grounding_dino, load_grounding_dino, load_sam
    from mlcore.teachers.autocast import cpu_has_native_bf16
    from mlcore.teachers.grounded_sam import GroundedSAM

    source = make_demo_dataset(work / "images", mode="both", num_images=args.images, image_size=(640, 480), seed=3)
    images = sorted((source.parent / "images").iterdir())
    torch.manual_seed(0)
    dino = load_grounding_dino(args.dino_preset, random_init=True)
    sam = load_sam(args.sam_preset, random_init=True)
    names = list(COCO_NAMES[:args.classes])
    variants = {"before": ("fp32", False), "fp32": ("fp32", True), "bf16": ("bf16", True)}
    results: dict[str, dict] = {}
    for variant, (precision, backbone_once) in variants.items():
        if precision == "bf16" and not cpu_has_native_bf16():
            results[variant] = {"skipped": "this CPU has no native bf16 (AVX512-BF16 or AMX)"}
            continue
        teachers = GroundedSAM(names, grounding_dino=dino, sam=sam, box_threshold=args.box_threshold,
                               text_threshold=0.0, max_detections=args.max_detections, precision=precision)
        cache = TeacherTargetCache(work / f"cache-{variant}", teachers, batch_size=args.batch, progress=False)
        seconds, handles = module_timers(dino, sam)
        per_chunk = contextlib.nullcontext() if backbone_once else _backbone_per_chunk(grounding_dino)
        with per_chunk:
            started = time.perf_counter()
            cache.fill(images)
            elapsed = time.perf_counter() - started
        for handle in handles:
            handle.remove()
        results[variant] = {"precision": precision, "backbone_once": backbone_once, "seconds": round(elapsed, 2),
                            "images_per_second": round(len(images) / elapsed, 5),
                            "modules_seconds": {name: round(value, 2) for name, value in sorted(seconds.items())},
                            "boxes_per_image": sum(len(cache.get(path)) for path in images) / len(images)}
        print(variant, json.dumps(results[variant]), flush=True)
    before = results["before"]["seconds"]
    for record in results.values():
        if "seconds" in record:
            record["speedup_vs_before"] = round(before / record["seconds"], 3)
    return {"teachers": {"grounding_dino": args.dino_preset, "sam": args.sam_preset,
                         "weights": "random_init (full-size architectures; speed does not depend on the weights)"},
            "images": len(images), "image_size": [640, 480], "batch_size": args.batch, "classes": len(names),
            "prompt_chunks": len(GroundedSAM(names, grounding_dino=dino).prompt_chunks(names)),
            "max_detections": args.max_detections, "torch_threads": torch.get_num_threads(),
            "cpu_native_bf16": cpu_has_native_bf16(), "variants": results}


@contextlib.contextmanager
def _backbone_per_chunk(grounding_dino):
    """mlcore before the change: no sharing of the backbone between prompt chunks."""
    original = grounding_dino.backbone_computed_once
    grounding_dino.backbone_computed_once = lambda model: contextlib.nullcontext()
    try:
        yield
    finally:
        grounding_dino.backbone_computed_once = original


def labels(work: Path, args: argparse.Namespace) -> dict:
    from mlcore.data.coco_dataset import CocoDataset
    from mlcore.data.demo import FIELD_CLASSES, make_field_dataset
    from mlcore.evaluation.teacher_scores import evaluate_teacher
    from mlcore.teachers import load_grounding_dino, load_sam
    from mlcore.teachers.autocast import cpu_has_native_bf16
    from mlcore.teachers.grounded_sam import GroundedSAM

    if not cpu_has_native_bf16():
        return {"skipped": "this CPU has no native bf16 (AVX512-BF16 or AMX)"}
    annotations = make_field_dataset(work / "field", num_images=args.label_images, seed=11)
    dataset = CocoDataset(annotations)
    dino, sam = load_grounding_dino("shapes"), load_sam("shapes")
    scores = {}
    for precision in ("fp32", "bf16"):
        teachers = GroundedSAM(list(FIELD_CLASSES), grounding_dino=dino, sam=sam, precision=precision)
        started = time.perf_counter()
        result = evaluate_teacher(teachers, dataset, annotations, name=f"shapes-{precision}")
        scores[precision] = {key: round(value, 4) for key, value in result.metrics().items()
                             if key in ("map50_95", "map50", "mask_map50_95", "mask_map50")}
        scores[precision]["seconds"] = round(time.perf_counter() - started, 2)
    scores["difference_bf16_minus_fp32"] = {key: round(scores["bf16"][key] - scores["fp32"][key], 4)
                                            for key in scores["fp32"] if key != "seconds"}
    return {"teachers": "shipped shapes teachers (zero-shot)", "data": "make_field_dataset, seed 11",
            "images": len(dataset), **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=80, help="how many COCO class names make the prompt")
    parser.add_argument("--dino-preset", default="grounding_dino_swint")
    parser.add_argument("--sam-preset", default="sam_vit_b")
    parser.add_argument("--box-threshold", type=float, default=0.3)
    parser.add_argument("--max-detections", type=int, default=20,
                        help="boxes per image SAM masks (random-weight DINO passes hundreds of its 900 queries)")
    parser.add_argument("--label-images", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="tiny teachers, fewer images")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.quick:
        args.dino_preset = args.sam_preset = "tiny"
        args.label_images = 8
    work = Path(tempfile.mkdtemp(prefix="mlcore-bench-labelling-"))
    try:
        record = {"machine": machine_info(["torch", "transformers"]), "code": code_version(), "quick": args.quick,
                  "speed": speed(work, args), "labels": labels(work, args)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
