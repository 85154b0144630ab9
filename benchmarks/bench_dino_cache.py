"""Grounding DINO LoRA step on cached frozen-stage outputs vs recomputing them: full-size Swin-T, random weights, CPU.

    python benchmarks/bench_dino_cache.py                 # 512x512, 1 warm-up + 3 timed steps each (~3 minutes)
    python benchmarks/bench_dino_cache.py --quick         # tiny preset: a smoke run of the whole path

Three measurements, each in a fresh child process (so each VmHWM is its own):
- `fill`: the frozen stages (Swin-T, BERT, fusion encoder) once per image: the cache's one-off cost per image.
- `cached`: LoRA steps served by `DinoFeatureCache.replay` (decoder, heads, Hungarian loss, backward, AdamW).
- `recompute`: the same steps running the frozen stages (in eval mode, as the trainer runs them); after each, the
  same number of cached steps in the same process, so the ratio compares steps taken under the same machine load.
Speed does not depend on the weights, so random weights give the real architecture's times and memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import code_version, machine_info, status_bytes  # noqa: E402

MEASUREMENTS = {
    "fill": "frozen stages (Swin-T backbone, BERT text encoder, fusion encoder) for one image and prompt, no grad",
    "cached": "LoRA step from the cache: decoder forward + model loss + backward + AdamW (no image read)",
    "recompute": "the same LoRA step recomputing the frozen stages from pixels; after each, one cached step in the "
                 "same process (details.interleaved_cached_seconds)",
}
CLASSES = ["person", "forklift", "pallet"]


def run_child(kind: str, settings: dict, result: Path, work: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from mlcore.config.schemas.teachers import TeacherGroundingDinoLoraConfig
    from mlcore.finetune.dino_cache import DinoFeatureCache
    from mlcore.finetune.dino_frozen import keep_frozen_stages_in_eval
    from mlcore.finetune.trainer import dino_preprocessor
    from mlcore.preprocess import load_rgb
    from mlcore.teachers import apply_lora_to_grounding_dino, build_prompt_chunks, load_grounding_dino

    torch.manual_seed(0)
    size = settings["size"]
    image = work / f"image_{size}.png"
    if not image.is_file():
        pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
    started = time.perf_counter()
    teacher = load_grounding_dino(settings["preset"], random_init=True)
    teacher.model = apply_lora_to_grounding_dino(teacher.model)
    keep_frozen_stages_in_eval(teacher.model)
    load_seconds = time.perf_counter() - started
    config = TeacherGroundingDinoLoraConfig(training={"shortest_edge": size, "longest_edge": size})
    preprocessor = dino_preprocessor(teacher, config)
    (chunk,) = build_prompt_chunks(teacher.tokenizer, CLASSES)
    cache = DinoFeatureCache(work / "cache", teacher, preprocessor, (size, size), progress=False)
    generator = torch.Generator().manual_seed(0)
    labels = [{"class_labels": torch.randint(0, len(CLASSES), (settings["boxes"],), generator=generator),
               "boxes": torch.cat([0.2 + 0.6 * torch.rand(settings["boxes"], 2, generator=generator),
                                   0.05 + 0.3 * torch.rand(settings["boxes"], 2, generator=generator)], -1)}]
    optimizer = torch.optim.AdamW([p for p in teacher.model.parameters() if p.requires_grad], lr=1e-4)
    batch = preprocessor([load_rgb(image)])
    mask = batch.pixel_mask

    def step(cached: bool) -> float:
        teacher.model.train()
        if cached:
            with cache.replay(teacher.model, [image]):
                loss = teacher.model(pixel_values=cache.blank(1), pixel_mask=mask, labels=labels,
                                     **chunk.encode(1)).loss
        else:
            loss = teacher.model(pixel_values=batch.pixel_values, pixel_mask=mask, labels=labels,
                                 **chunk.encode(1)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    seconds, interleaved, details = [], [], {}
    if kind == "fill":
        for repeat in range(settings["fill_repeats"]):
            (work / "cache").mkdir(exist_ok=True)
            for old in (work / "cache").glob("*.pt"):
                old.unlink()
            begin = time.perf_counter()
            cache.fill([image], [chunk])
            seconds.append(time.perf_counter() - begin)
        record = torch.load(cache.path(image, chunk), weights_only=True)
        details = {"cached_bytes_per_image_and_prompt": cache.path(image, chunk).stat().st_size,
                   "vision_tokens": int(record["vision"].shape[0]), "levels": record["levels"]}
    else:
        for index in range(settings["warmup"] + settings["steps"]):
            begin = time.perf_counter()
            step(cached=kind == "cached")
            if index >= settings["warmup"]:
                seconds.append(time.perf_counter() - begin)
            if kind == "recompute":
                begin = time.perf_counter()
                step(cached=True)
                if index >= settings["warmup"]:
                    interleaved.append(time.perf_counter() - begin)
        if interleaved:
            details["interleaved_cached_seconds"] = interleaved
    result.write_text(json.dumps({"seconds": seconds, "load_seconds": load_seconds,
                                  "peak_rss_bytes": status_bytes("VmHWM"),
                                  "torch_threads": torch.get_num_threads(), "details": details}))


def measure(kind: str, settings: dict, work: Path, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        result = Path(scratch) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--settings", json.dumps(settings),
                   "--result", str(result), "--work", str(work)]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            raise RuntimeError(f"{kind} failed:\n{completed.stderr[-4000:]}")
        run = json.loads(result.read_text())
        run["process_seconds"] = round(time.perf_counter() - started, 2)
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square input side (default 512)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fill-repeats", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny preset, 256 px")
    parser.add_argument("--work", type=Path, default=HERE / ".cache" / "dino_cache")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--child", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, json.loads(args.settings), args.result, args.work)
        return
    settings = {"preset": "tiny" if args.quick else "grounding_dino_swint", "size": 256 if args.quick else args.size,
                "warmup": args.warmup, "steps": args.steps, "fill_repeats": args.fill_repeats, "boxes": args.boxes}
    output = args.output or (args.work / "dino_cache_quick.json" if args.quick
                             else HERE / "results" / "dino_cache_cpu.json")
    args.work.mkdir(parents=True, exist_ok=True)
    machine, started = machine_info(["torch", "transformers", "peft"]), time.perf_counter()
    runs = {}
    for kind in MEASUREMENTS:  # fill first: it writes the cache the other two read
        runs[kind] = measure(kind, settings, args.work, args.timeout)
        run = runs[kind]
        print(f"{kind:<10} median {statistics.median(run['seconds']):.3f} s over {len(run['seconds'])}, "
              f"peak {run['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    medians = {kind: {"median_seconds": round(statistics.median(run["seconds"]), 4),
                      "min_seconds": round(min(run["seconds"]), 4), "timed": len(run["seconds"]),
                      "peak_rss_gib": round(run["peak_rss_bytes"] / 2**30, 2)} for kind, run in runs.items()}
    interleaved = statistics.median(runs["recompute"]["details"]["interleaved_cached_seconds"])
    medians["recompute"]["median_interleaved_cached_seconds"] = round(interleaved, 4)
    ratios = {"recompute_over_cached": {
        "value": round(medians["recompute"]["median_seconds"] / interleaved, 1),
        "definition": "median step recomputing the frozen stages / median cached step taken right after each of "
                      "them in the same process"},
        "recompute_over_cached_separate": {
        "value": round(medians["recompute"]["median_seconds"] / medians["cached"]["median_seconds"], 1),
        "definition": "the same, with the cached median from its own process"}}
    result = {"benchmark": "dino_cache_cpu", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine, "code": code_version(),
              "settings": {**settings, "weights": "random_init", "prompt": " . ".join(CLASSES) + " .",
                           "storage": "float16", "lora": "template default (decoder self/text attention, r16)"},
              "measurements": MEASUREMENTS, "runs": runs, "medians": medians, "ratios": ratios,
              "total_seconds": round(time.perf_counter() - started, 1)}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    for kind, summary in medians.items():
        print(f"{kind:<10} {summary}")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio['value']}  ({ratio['definition']})")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
