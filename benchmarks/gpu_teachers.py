"""The teachers' LoRA training on one GPU capped at 24 GiB: peak memory, steps/s and the largest batch that fits.

    python benchmarks/gpu_teachers.py                         # CUDA: Grounding DINO Swin-T 800x1333 + SAM ViT-H
    python benchmarks/gpu_teachers.py --device cpu --quick    # dry run of the code path with tiny presets (CPU)

Full-size architectures with random weights (speed and memory do not depend on the weights), fp32 weights under
bf16 autocast (what `mixed_precision: auto` gives on a bf16 GPU), memory capped with
`torch.cuda.set_per_process_memory_fraction(24 GiB / total)` so that a bigger card answers for a 24 GB one.
For each measurement, batches 1, 2, 4, ... run until one raises `torch.OutOfMemoryError` (or --max-batch):

- `dino`: Grounding DINO LoRA step (forward with labels -> model loss, backward, AdamW), ~3-class prompt;
- `sam_cached`: SAM LoRA step on cached image embeddings (mask decoder only), `--boxes` boxes per image;
- `sam_recompute`: the same step with the frozen image encoder run inside it (no cache);
- `sam_encode`: the frozen encoder alone (building the cache), images/s.

Without CUDA (and no `--device cpu`) it prints why and exits with code 2, writing nothing: a skipped run must not
replace real figures in benchmarks/results/teachers_gpu.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import code_version, package_versions  # noqa: E402

EXIT_NO_CUDA = 2
GIB = 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="tiny presets, small inputs: checks the code path")
    parser.add_argument("--memory-cap-gib", type=float, default=24.0, help="GPU memory cap (default 24)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="autocast dtype (default bf16)")
    parser.add_argument("--sam-preset", default="sam_vit_h", choices=["sam_vit_b", "sam_vit_l", "sam_vit_h"])
    parser.add_argument("--dino-size", default="800x1333", help="Grounding DINO input HxW (default 800x1333, the "
                                                                "largest the default preprocessing produces)")
    parser.add_argument("--boxes", type=int, default=8, help="boxes per image (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per batch size (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per batch size (default 5)")
    parser.add_argument("--max-batch", type=int, help="largest batch tried (default 64 on CUDA, 2 on CPU)")
    parser.add_argument("--only", choices=["dino", "sam"], help="one teacher only")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/teachers_gpu.json; a "
                                                    "CPU or --quick run: benchmarks/.cache/teachers_gpu_dryrun.json)")
    args = parser.parse_args()

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_teachers: CUDA is not available here (torch.cuda.is_available() is False), so nothing was "
              "measured and no results were written. Run it on a CUDA machine, or check the code path on CPU with "
              "`--device cpu --quick`.", file=sys.stderr)
        return EXIT_NO_CUDA
    dry_run = device.type != "cuda" or args.quick
    output = args.output or (HERE / ".cache" / "teachers_gpu_dryrun.json" if dry_run
                             else HERE / "results" / "teachers_gpu.json")
    max_batch = args.max_batch or (64 if device.type == "cuda" else 2)
    cap = apply_memory_cap(torch, device, args.memory_cap_gib)
    height, width = (int(side) for side in args.dino_size.lower().split("x"))
    settings = {
        "device": str(device), "quick": args.quick, "precision": args.precision, "memory_cap": cap,
        "dino_preset": "tiny" if args.quick else "grounding_dino_swint",
        "sam_preset": "tiny" if args.quick else args.sam_preset,
        "dino_size": [min(height, 256), min(width, 256)] if args.quick else [height, width],
        "boxes_per_image": args.boxes, "warmup": args.warmup, "steps": args.steps, "max_batch": max_batch,
        "weights": "random_init, fp32 master weights; LoRA defaults of the teacher config templates",
    }
    result = {"benchmark": "teachers_gpu", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "dry_run": dry_run,
              "machine": machine_info(torch, device), "code": code_version(), "settings": settings,
              "measurements": {}}
    families = [args.only] if args.only else ["dino", "sam"]
    for family in families:
        for name, summary in run_family(torch, family, settings, device).items():
            result["measurements"][name] = summary
            print_summary(name, summary)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def apply_memory_cap(torch, device, cap_gib: float) -> dict:
    """Cap this process's CUDA allocations at cap_gib (a fraction of the card); on CPU nothing to cap."""
    if device.type != "cuda":
        return {"applied": False, "reason": "not a CUDA device"}
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, cap_gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return {"applied": True, "cap_bytes": int(fraction * total), "device_total_bytes": total, "fraction": fraction,
            "note": None if fraction < 1.0 else "the card is smaller than the cap: its whole memory is the limit"}


def run_family(torch, family: str, settings: dict, device) -> dict[str, dict]:
    """Load one teacher with LoRA, then sweep the batch size of each of its measurements."""
    import teacher_steps as steps
    from mlcore.teachers import (
        apply_lora_to_grounding_dino,
        apply_lora_to_sam,
        load_grounding_dino,
        load_sam,
        verify_lora_freezing,
    )

    dtype = torch.bfloat16 if settings["precision"] == "bf16" else None

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    torch.manual_seed(0)
    if family == "dino":
        teacher = load_grounding_dino(settings["dino_preset"], random_init=True, device=device)
        model = apply_lora_to_grounding_dino(teacher.model)
    else:
        teacher = load_sam(settings["sam_preset"], random_init=True, device=device)
        model = apply_lora_to_sam(teacher.model)
    model.train()
    report = verify_lora_freezing(model)
    parameters = {"total": report.total, "trainable": report.trainable, "ratio": report.ratio}
    optimizer = steps.adamw(model)
    boxes = settings["boxes_per_image"]

    def dino(batch_size: int) -> Callable[[], object]:
        height, width = settings["dino_size"]
        batch = steps.dino_batch(teacher.tokenizer, height, width, batch_size, boxes, device=device)
        return lambda: steps.dino_step(model, optimizer, batch, autocast)

    def sam_batch(batch_size: int):
        return steps.sam_batch(teacher.preset.image_size, batch_size, boxes, device=device)

    def sam_cached(batch_size: int) -> Callable[[], object]:
        batch = sam_batch(batch_size)
        embeddings = steps.sam_embed(model, batch.pixel_values[:1], autocast).float()
        embeddings = embeddings.expand(batch_size, -1, -1, -1).contiguous()  # the cache as the trainer holds it
        batch.pixel_values = batch.pixel_values[:0]  # a cached step never sees the images
        return lambda: steps.sam_decoder_step(model, optimizer, embeddings, batch, autocast)

    def sam_recompute(batch_size: int) -> Callable[[], object]:
        batch = sam_batch(batch_size)
        return lambda: steps.sam_recompute_step(model, optimizer, batch, autocast)

    def sam_encode(batch_size: int) -> Callable[[], object]:
        pixels = sam_batch(batch_size).pixel_values
        return lambda: steps.sam_embed(model, pixels, autocast)

    builders = {"dino": dino} if family == "dino" else {
        "sam_cached": sam_cached, "sam_recompute": sam_recompute, "sam_encode": sam_encode}
    summaries = {}
    for name, build in builders.items():
        trials = sweep(torch, device, build, optimizer, settings)
        fitted = [trial for trial in trials if not trial.get("oom")]
        summaries[name] = {"preset": teacher.preset.name, "parameters": parameters, "trials": trials,
                           "largest_batch": fitted[-1]["batch"] if fitted else None,
                           "oom_at": next((trial["batch"] for trial in trials if trial.get("oom")), None),
                           "batch_1": fitted[0] if fitted and fitted[0]["batch"] == 1 else None}
    del model, teacher, optimizer
    release(torch, device)
    return summaries


def sweep(torch, device, build, optimizer, settings: dict) -> list[dict]:
    """Batch 1, 2, 4, ... until out of memory or max_batch; each size from a clean peak counter."""
    trials = []
    batch_size = 1
    while batch_size <= settings["max_batch"]:
        try:
            trials.append({"batch": batch_size, **time_steps(torch, device, build(batch_size), settings)})
        except torch.OutOfMemoryError as exc:
            trials.append({"batch": batch_size, "oom": True, "error": str(exc).splitlines()[0][:300],
                           "peak_allocated_bytes": peak_memory(torch, device)})
        finally:
            optimizer.zero_grad(set_to_none=True)  # a step that died after backward leaves gradients behind
            release(torch, device)
        if trials[-1].get("oom"):
            break
        batch_size *= 2
    return trials


def time_steps(torch, device, step, settings: dict) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(settings["warmup"]):
        step()
    seconds = []
    for _ in range(settings["steps"]):
        synchronize(torch, device)
        started = time.perf_counter()
        step()
        synchronize(torch, device)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    trial = {"median_step_seconds": round(median, 4), "steps_per_second": round(1 / median, 3),
             "seconds": [round(s, 4) for s in seconds], "peak_allocated_bytes": peak_memory(torch, device)}
    if device.type == "cuda":
        trial["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    return trial


def peak_memory(torch, device) -> int:
    """CUDA: torch.cuda.max_memory_allocated since the last reset. CPU (dry run): the process's VmHWM."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))


def synchronize(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(torch, device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_summary(name: str, summary: dict) -> None:
    print(f"{name} ({summary['preset']}): largest batch {summary['largest_batch']}"
          + (f", out of memory at {summary['oom_at']}" if summary["oom_at"] else ""))
    for trial in summary["trials"]:
        peak = trial["peak_allocated_bytes"] / GIB if trial.get("peak_allocated_bytes") else float("nan")
        if trial.get("oom"):
            print(f"  batch {trial['batch']:>3}: out of memory")
        else:
            print(f"  batch {trial['batch']:>3}: {trial['median_step_seconds']:.3f} s/step, "
                  f"{trial['steps_per_second']:.2f} steps/s, peak {peak:.2f} GiB")


def machine_info(torch, device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "versions": package_versions(("mlcore", "torch", "transformers", "peft")),
            "torch_cuda": torch.version.cuda, "device_type": device.type}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update({"gpu": properties.name, "gpu_memory_bytes": properties.total_memory,
                     "capability": list(torch.cuda.get_device_capability(device)),
                     "bf16_supported": torch.cuda.is_bf16_supported()})
    return info


if __name__ == "__main__":
    sys.exit(main())
