"""Time `validate` on a COCO-train2017-scale file against pycocotools merely loading it; record wall time and peak RSS.

Every measurement runs in a fresh child process, so each peak RSS is that measurement's own. Baseline and candidate
alternate (and swap which goes first each round) so that a noisy machine hurts both alike; medians are reported.

    python benchmarks/bench_validate.py                      # full scale, 1 repeat
    python benchmarks/bench_validate.py --scale 0.1          # quick: a tenth of the counts, 3 repeats

Goals (from the project): validation within 2x of pycocotools' load time, peak memory under 3x the file's size.
"""

from __future__ import annotations

import argparse
import json
import resource
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
from make_coco_scale import FULL_ANNOTATIONS, FULL_IMAGES, generate  # noqa: E402

TIME_GOAL = 2.0  # mlcore's wall time / pycocotools COCO()'s
MEMORY_GOAL = 3.0  # mlcore's peak RSS / the file's size
MEASUREMENTS = {
    "pycocotools": "pycocotools.coco.COCO(path): load + index (baseline)",
    "mlcore": "mlcore prepare_dataset(path, image_check='none'): validation end to end, outputs written",
    "json_load": "json.load(file): the stdlib parse alone (reference)",
}


# --- child side: one measurement in a fresh interpreter ------------------------------------------------------------

def run_child(kind: str, data: Path, result: Path, scratch: Path) -> None:
    """Import first (not timed), then time the one call and report its wall time and the process's peak RSS."""
    if kind == "pycocotools":
        from pycocotools.coco import COCO

        def call() -> dict:
            coco = COCO(str(data))
            return {"images": len(coco.imgs), "annotations": len(coco.anns)}
    elif kind == "mlcore":
        from mlcore.data.prepare import prepare_dataset

        def call() -> dict:
            report = prepare_dataset(data, output_dir=scratch, image_check="none", progress=False)
            stats = report.statistics
            return {"usable": report.usable, "findings": report.counts, "repairs": report.repairs,
                    "images": stats.images if stats else None, "annotations": stats.annotations if stats else None}
    elif kind == "json_load":
        def call() -> dict:
            with open(data, "rb") as handle:
                parsed = json.load(handle)
            return {"images": len(parsed["images"]), "annotations": len(parsed["annotations"])}
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    rss_before = status_bytes("VmRSS")
    started = time.perf_counter()
    details = call()
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into a child's ru_maxrss across fork + exec.
    result.write_text(json.dumps({
        "seconds": seconds, "peak_rss_bytes": status_bytes("VmHWM"), "rss_after_imports_bytes": rss_before,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "details": details,
    }))


# --- parent side ---------------------------------------------------------------------------------------------------

def measure(kind: str, data: Path, work: Path, timeout: float) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"{kind}_", dir=work))
    result = scratch / "result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--data", str(data),
               "--result", str(result), "--scratch", str(scratch / "out")]
    started = time.perf_counter()
    errors = scratch / "stderr.txt"
    try:
        with open(errors, "w") as stderr:
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                returncode = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Its peak so far is still worth having: a lower bound, like the time.
                peak = status_bytes("VmHWM", child.pid)
                child.kill()
                child.wait()
                return {"seconds": timeout, "peak_rss_bytes": peak, "process_seconds": time.perf_counter() - started,
                        "timed_out": True}
        if returncode != 0:
            raise RuntimeError(f"{kind} failed (exit {returncode}):\n{errors.read_text()[-4000:]}")
        run = json.loads(result.read_text())
        run["process_seconds"] = time.perf_counter() - started
        run["timed_out"] = False
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def dataset(work: Path, scale: float, seed: int, masks_only: bool = False) -> tuple[Path, dict]:
    """The cached file for this scale and seed, generated on first use."""
    images, annotations = round(FULL_IMAGES * scale), round(FULL_ANNOTATIONS * scale)
    path = work / f"coco_scale_{images}i_{annotations}a_seed{seed}{'_masks_only' if masks_only else ''}.json"
    counts_path = path.with_suffix(".counts.json")
    if path.is_file() and counts_path.is_file():
        return path, json.loads(counts_path.read_text())
    print(f"generating {path.name} ...", flush=True)
    started = time.perf_counter()
    counts = generate(path, images=images, annotations=annotations, seed=seed, masks_only=masks_only)
    counts["generation_seconds"] = round(time.perf_counter() - started, 1)
    counts_path.write_text(json.dumps(counts))
    return path, counts


def warm_page_cache(path: Path) -> None:
    """Read the file once so no measurement pays for the disk and the first one is not penalised."""
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def summarise(runs: list[dict], file_size: int) -> dict:
    # A timed-out run counts with its time and peak so far: the medians are then lower bounds.
    timed_out = sum(r["timed_out"] for r in runs)
    seconds = statistics.median(r["seconds"] for r in runs)
    peaks = [r["peak_rss_bytes"] for r in runs if r["peak_rss_bytes"]]
    peak = statistics.median(peaks) if peaks else None
    return {"runs": len(runs), "timed_out": timed_out, "median_seconds": round(seconds, 3),
            "median_peak_rss_bytes": peak, "peak_rss_over_file_size": round(peak / file_size, 3) if peak else None}


def print_table(result: dict) -> None:
    size = result["file"]["bytes"]
    print(f"\nfile: {result['file']['path']}  ({size / 2**20:,.1f} MiB, {result['file']['images']:,} images, "
          f"{result['file']['annotations']:,} annotations)")
    print(f"{'measurement':<14}{'runs':>5}{'median wall s':>20}{'median peak RSS MiB':>21}{'RSS / file':>12}")
    for kind, summary in result["medians"].items():
        peak = summary["median_peak_rss_bytes"]
        wall = f"{summary['median_seconds']:.2f}" + (" (timeout)" if summary["timed_out"] else "")
        print(f"{kind:<14}{summary['runs']:>5}{wall:>20}{(f'{peak / 2**20:,.0f}' if peak else '-'):>21}"
              f"{(f'{peak / size:.2f}x' if peak else '-'):>12}")
    for name, goal in result["goals"].items():
        value = goal["value"]
        shown = (">= " if goal["lower_bound"] else "") + (f"{value:.2f}" if value is not None else "-")
        print(f"{name}: {shown} (goal <= {goal['goal']}): {'met' if goal['met'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of train2017's counts (1.0 = full scale)")
    parser.add_argument("--repeats", type=int, help="runs of each measurement (default: 3, or 1 at full scale)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated file")
    parser.add_argument("--work", type=Path, default=HERE / ".cache", help="where generated files and outputs go")
    parser.add_argument("--output", type=Path, help="results JSON (default: benchmarks/results/validate_coco_scale"
                                                    "[_s<scale>].json)")
    parser.add_argument("--no-json-load", action="store_true", help="skip the plain json.load reference")
    parser.add_argument("--masks-only", action="store_true",
                        help="annotations without bbox/area: every record is repaired and rewritten (worst case)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a single run is abandoned")
    parser.add_argument("--child", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.data, args.result, args.scratch)
        return

    full = args.scale == 1.0
    repeats = args.repeats or (1 if full else 3)
    suffix = "_masks_only" if args.masks_only else ""
    output = args.output or HERE / "results" / (f"validate_coco_scale{suffix}.json" if full
                                                else f"validate_coco_scale_s{args.scale:g}{suffix}.json")
    args.work.mkdir(parents=True, exist_ok=True)
    machine, code = machine_info(["msgspec", "pycocotools", "numpy", "pydantic"]), code_version()
    path, counts = dataset(args.work, args.scale, args.seed, args.masks_only)
    size = path.stat().st_size
    warm_page_cache(path)

    kinds = ["pycocotools", "mlcore"] + ([] if args.no_json_load else ["json_load"])
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for round_index in range(repeats):
        order = kinds if round_index % 2 == 0 else [kinds[1], kinds[0], *kinds[2:]]
        for kind in order:
            run = measure(kind, path, args.work, args.timeout)
            runs[kind].append(run)
            peak = f"{run['peak_rss_bytes'] / 2**20:,.0f} MiB" if run["peak_rss_bytes"] else "-"
            print(f"round {round_index + 1}/{repeats} {kind:<12} {run['seconds']:8.2f} s  peak RSS {peak}"
                  + ("  (timed out)" if run["timed_out"] else ""), flush=True)

    medians = {kind: summarise(kind_runs, size) for kind, kind_runs in runs.items()}
    base, cand = medians["pycocotools"], medians["mlcore"]
    time_ratio = cand["median_seconds"] / base["median_seconds"]
    memory_ratio = cand["peak_rss_over_file_size"]
    incomplete = cand["timed_out"] > 0
    result = {
        "benchmark": "validate_coco_scale",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "code": code,
        "scale": args.scale, "seed": args.seed, "repeats": repeats, "page_cache": "warmed before the first run",
        "file": {"path": str(path), "bytes": size, **counts},
        "measurements": MEASUREMENTS,
        "runs": runs,
        "medians": medians,
        "goals": {
            # With a timed-out mlcore run both values are lower bounds, and a goal cannot be called met.
            "time_ratio": {"value": round(time_ratio, 3), "goal": TIME_GOAL, "lower_bound": incomplete,
                           "met": bool(time_ratio <= TIME_GOAL and not incomplete),
                           "definition": "median mlcore seconds / median pycocotools COCO() seconds"},
            "memory_ratio": {"value": memory_ratio, "goal": MEMORY_GOAL, "lower_bound": incomplete,
                             "met": bool(memory_ratio is not None and memory_ratio <= MEMORY_GOAL and not incomplete),
                             "definition": "median mlcore peak RSS / file size"},
        },
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
