"""Time the teachers' LoRA training steps on CPU, full-size architectures with random weights; record peak memory.

    python benchmarks/bench_teachers.py                          # SAM ViT-B + Grounding DINO Swin-T, ~4 minutes
    python benchmarks/bench_teachers.py --sam-preset sam_vit_h   # ViT-H: the encoder is ~5x slower (~10 minutes)
    python benchmarks/bench_teachers.py --quick                  # tiny presets: a smoke run of the whole path

Four measurements, each in a fresh child process (so each VmHWM is its own):
- `sam_encode`: the frozen image encoder once per image (the one-off cost of the embedding cache); it writes the
  embeddings the next child trains on.
- `sam_cached`: SAM LoRA steps on those cached embeddings (mask decoder forward, loss, backward, AdamW).
- `sam_recompute`: the same steps, with the frozen encoder recomputed inside every step (no cache).
- `dino`: Grounding DINO LoRA steps (forward with labels -> model loss, backward, AdamW) on a ~3-class prompt.
Speed does not depend on the weights, so random weights give the real architectures' times and memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import code_version, machine_info, status_bytes  # noqa: E402

INTERLEAVED_CACHED_STEPS = 3  # cached steps after each recompute step, in the same process
MEASUREMENTS = {
    "sam_encode": "SAM frozen image encoder, one image per call (the embedding cache's one-off cost per image)",
    "sam_cached": "SAM LoRA step on cached embeddings: mask decoder forward + loss + backward + AdamW step",
    "sam_recompute": "the same SAM LoRA step with the frozen image encoder run inside each step (no cache); "
                     "after each, 3 cached steps in the same process (details.interleaved_cached_seconds)",
    "dino": "Grounding DINO LoRA step: forward with labels -> model loss, backward, AdamW step",
}


# --- child side ----------------------------------------------------------------------------------------------------

def run_child(kind: str, settings: dict, result: Path, work: Path) -> None:
    import torch

    import teacher_steps as steps
    from mlcore.teachers import (
        apply_lora_to_grounding_dino,
        apply_lora_to_sam,
        load_grounding_dino,
        load_sam,
        verify_lora_freezing,
    )

    torch.manual_seed(0)
    rss_start = status_bytes("VmRSS")
    started = time.perf_counter()
    if kind == "dino":
        teacher = load_grounding_dino(settings["dino_preset"], random_init=True)
        model = apply_lora_to_grounding_dino(teacher.model)
    else:
        teacher = load_sam(settings["sam_preset"], random_init=True)
        model = apply_lora_to_sam(teacher.model)
    load_seconds = time.perf_counter() - started
    report = verify_lora_freezing(model)
    rss_loaded = status_bytes("VmRSS")
    model.train()
    optimizer = steps.adamw(model)
    details: dict = {}
    seconds: list[float] = []

    def timed(call) -> None:
        begin = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - begin)

    if kind == "sam_encode":
        size = teacher.preset.image_size
        embeddings = []
        for index in range(settings["encode_images"]):
            batch = steps.sam_batch(size, 1, settings["boxes"], seed=index)
            timed(lambda: embeddings.append(steps.sam_embed(model, batch.pixel_values)))
        cache = torch.cat(embeddings)
        torch.save(cache, work / "sam_embeddings.pt")
        details = {"image_size": size, "embedding_shape": list(cache.shape[1:]),
                   "embedding_bytes_per_image": cache[0].numel() * cache.element_size()}
    elif kind in ("sam_cached", "sam_recompute"):
        size = teacher.preset.image_size
        cache = torch.load(work / "sam_embeddings.pt")
        interleaved: list[float] = []  # sam_recompute: cached steps between its steps, for a drift-proof ratio
        for step in range(settings["warmup"] + settings[f"{kind}_steps"]):
            index = step % settings["encode_images"]
            batch = steps.sam_batch(size, 1, settings["boxes"], seed=index)
            cached = lambda: steps.sam_decoder_step(model, optimizer, cache[index:index + 1], batch)  # noqa: E731
            if kind == "sam_cached":
                timed(cached)
                continue
            timed(lambda: steps.sam_recompute_step(model, optimizer, batch))
            for _ in range(INTERLEAVED_CACHED_STEPS):
                begin = time.perf_counter()
                cached()
                if step >= settings["warmup"]:
                    interleaved.append(time.perf_counter() - begin)
        details = {"image_size": size, "images_per_step": 1, "boxes_per_image": settings["boxes"]}
        if interleaved:
            details["interleaved_cached_seconds"] = interleaved
    elif kind == "dino":
        height, width = settings["dino_size"]
        batch = steps.dino_batch(teacher.tokenizer, height, width, 1, settings["boxes"])
        losses = []
        for _ in range(settings["warmup"] + settings["dino_steps"]):
            timed(lambda: losses.append(steps.dino_step(model, optimizer, batch)))
        details = {"input_hw": [height, width], "images_per_step": 1, "boxes_per_image": settings["boxes"],
                   "prompt": batch.prompt, "prompt_tokens": int(batch.inputs["input_ids"].shape[1]),
                   "losses": [round(loss, 3) for loss in losses]}
    else:
        raise SystemExit(f"unknown measurement {kind!r}")

    warmup = 0 if kind == "sam_encode" else settings["warmup"]
    result.write_text(json.dumps({
        "seconds": seconds[warmup:], "warmup_seconds": seconds[:warmup], "load_seconds": load_seconds,
        "peak_rss_bytes": status_bytes("VmHWM"), "rss_at_start_bytes": rss_start,
        "rss_after_load_bytes": rss_loaded, "torch_threads": torch.get_num_threads(),
        "parameters": {"total": report.total, "trainable": report.trainable, "ratio": report.ratio,
                       "adapted_modules": len(report.trainable_modules)},
        "preset": teacher.preset.name, "details": details,
    }))


# --- parent side ---------------------------------------------------------------------------------------------------

def measure(kind: str, settings: dict, work: Path, timeout: float) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"{kind}_", dir=work))
    result, errors = scratch / "result.json", scratch / "stderr.txt"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--settings", json.dumps(settings),
               "--result", str(result), "--work", str(work)]
    started = time.perf_counter()
    try:
        with open(errors, "w") as stderr:
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                returncode = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                peak = status_bytes("VmHWM", child.pid)
                child.kill()
                child.wait()
                return {"timed_out": True, "peak_rss_bytes": peak, "process_seconds": time.perf_counter() - started}
        if returncode != 0:
            raise RuntimeError(f"{kind} failed (exit {returncode}):\n{errors.read_text()[-4000:]}")
        run = json.loads(result.read_text())
        run["process_seconds"] = round(time.perf_counter() - started, 2)
        run["timed_out"] = False
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def summarise(run: dict) -> dict:
    if run["timed_out"]:
        return {"timed_out": True, "peak_rss_bytes": run["peak_rss_bytes"]}
    return {"median_seconds": round(statistics.median(run["seconds"]), 4), "min_seconds": round(min(run["seconds"]), 4),
            "timed": len(run["seconds"]), "peak_rss_bytes": run["peak_rss_bytes"],
            "peak_rss_gib": round(run["peak_rss_bytes"] / 2**30, 2), "parameters": run["parameters"]}


def print_table(result: dict) -> None:
    print(f"\n{'measurement':<15}{'preset':<22}{'median s':>10}{'min s':>9}{'n':>4}{'peak GiB':>10}"
          f"{'params M':>10}{'trainable':>12}")
    for kind, summary in result["medians"].items():
        if summary.get("timed_out"):
            print(f"{kind:<15}timed out")
            continue
        params = summary["parameters"]
        print(f"{kind:<15}{result['runs'][kind]['preset']:<22}{summary['median_seconds']:>10.3f}"
              f"{summary['min_seconds']:>9.3f}{summary['timed']:>4}{summary['peak_rss_gib']:>10.2f}"
              f"{params['total'] / 1e6:>10.1f}{params['trainable']:>12,} ({params['ratio']:.3%})")
    for name, ratio in result["ratios"].items():
        print(f"{name}: {ratio['value']}  ({ratio['definition']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam-preset", default="sam_vit_b", choices=["sam_vit_b", "sam_vit_l", "sam_vit_h"])
    parser.add_argument("--dino-size", default="512x512", help="Grounding DINO input HxW (default 512x512)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of sam_recompute and dino (default 3)")
    parser.add_argument("--cached-steps", type=int, default=10, help="timed sam_cached steps (cheap; default 10)")
    parser.add_argument("--encode-images", type=int, default=2, help="images through the encoder (default 2)")
    parser.add_argument("--boxes", type=int, default=4, help="boxes per image (default 4)")
    parser.add_argument("--quick", action="store_true", help="tiny presets: a smoke run of the whole path")
    parser.add_argument("--work", type=Path, default=HERE / ".cache" / "teachers", help="scratch folder")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/teachers_cpu.json; "
                                                    "with --quick <work>/teachers_cpu_quick.json, not committed)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before one child is abandoned")
    parser.add_argument("--child", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, json.loads(args.settings), args.result, args.work)
        return

    height, width = (int(side) for side in args.dino_size.lower().split("x"))
    settings = {"sam_preset": "tiny" if args.quick else args.sam_preset,
                "dino_preset": "tiny" if args.quick else "grounding_dino_swint",
                "dino_size": [min(height, 256), min(width, 256)] if args.quick else [height, width],
                "warmup": args.warmup, "sam_recompute_steps": args.steps, "dino_steps": args.steps,
                "sam_cached_steps": args.cached_steps, "encode_images": args.encode_images, "boxes": args.boxes}
    output = args.output or (args.work / "teachers_cpu_quick.json" if args.quick
                             else HERE / "results" / "teachers_cpu.json")
    args.work.mkdir(parents=True, exist_ok=True)
    machine, code = machine_info(["torch", "transformers", "peft"]), code_version()
    started = time.perf_counter()
    runs = {}
    for kind in MEASUREMENTS:  # sam_encode first: it writes the embeddings sam_cached trains on
        run = runs[kind] = measure(kind, settings, args.work, args.timeout)
        shown = "timed out" if run["timed_out"] else (
            f"median {statistics.median(run['seconds']):.3f} s over {len(run['seconds'])}, "
            f"peak {run['peak_rss_bytes'] / 2**30:.2f} GiB, process {run['process_seconds']:.0f} s")
        print(f"{kind:<14} {shown}", flush=True)
    (args.work / "sam_embeddings.pt").unlink(missing_ok=True)

    medians = {kind: summarise(run) for kind, run in runs.items()}
    ratios = {}
    if not (medians["sam_cached"].get("timed_out") or medians["sam_recompute"].get("timed_out")):
        interleaved = statistics.median(runs["sam_recompute"]["details"]["interleaved_cached_seconds"])
        medians["sam_recompute"]["median_interleaved_cached_seconds"] = round(interleaved, 4)
        ratios["sam_recompute_over_cached"] = {
            "value": round(medians["sam_recompute"]["median_seconds"] / interleaved, 1),
            "definition": "median SAM step with the encoder recomputed / median cached step run between those "
                          "steps in the same process (both under the same machine load)"}
        ratios["sam_recompute_over_cached_separate"] = {
            "value": round(medians["sam_recompute"]["median_seconds"] / medians["sam_cached"]["median_seconds"], 1),
            "definition": "the same, with the cached steps' median from their own child process (sam_cached)"}
        encode = medians["sam_encode"]["median_seconds"]
        ratios["sam_encoder_over_cached_step"] = {
            "value": round(encode / interleaved, 1),
            "definition": "median encoder time per image / median cached step: the cache pays for itself after "
                          "one epoch, and every later epoch saves this factor"}
    result = {
        "benchmark": "teachers_cpu",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "code": code,
        "settings": {**settings, "weights": "random_init (full-size architectures; speed does not depend on them)",
                     "inputs": "seeded random normalized images; random boxes; SAM targets are the filled boxes",
                     "optimizer": "AdamW lr 1e-4 over the LoRA parameters",
                     "lora": "mlcore defaults (teacher config templates): DINO r16/a32/d0.1, SAM r8/a16/d0.05"},
        "measurements": MEASUREMENTS,
        "runs": runs,
        "medians": medians,
        "ratios": ratios,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\ntotal {result['total_seconds']:.0f} s; wrote {output}")


if __name__ == "__main__":
    main()
