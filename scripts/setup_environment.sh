#!/usr/bin/env bash
# Prepare a checkout for work: project folders, the .venv installed exactly from requirements.lock, the right
# onnxruntime for this machine, and a report of what accelerator PyTorch sees. Safe to run again at any time.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/setup_environment.sh [--cpu | --gpu] [--help]

Creates data/, logs/ and configs/{training,distillation,optimization,deployment}/, creates .venv if it is missing,
installs uv into it, installs requirements.lock with `uv pip sync` and then mlcore itself (editable, no deps).

Chromium: the Prefect UI test (tests/integration/test_prefect_ui.py) drives the distribution's Chromium through
Playwright. When no chromium is on PATH and the script runs as root where apt-get exists, it installs the `chromium`
package; otherwise it prints a note and goes on (that test then skips).

onnxruntime: requirements.lock pins the CPU package `onnxruntime` (the `cpu` extra). When `nvidia-smi` works, the
script swaps it for `onnxruntime-gpu` (the `gpu` extra) at the locked version, or the newest older release when
that version has no GPU build. The two packages install the same `onnxruntime` module, so never both. The GPU
package still runs on CPU, but it is large, so CPU-only machines keep the CPU one.

Options:
  --cpu     keep onnxruntime (CPU) even if an NVIDIA GPU is visible
  --gpu     install onnxruntime-gpu even if nvidia-smi is missing (e.g. building on a machine without the driver)
  --help    show this text

Environment:
  PYTHON      interpreter used to create .venv (default: python3.11, else python3 if it is 3.11)
  UV_VERSION  uv version installed into .venv (default: 0.13.9)
  MLCORE_NO_CHROMIUM  set to anything to leave Chromium alone
EOF
}

onnx_choice=auto
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --cpu) onnx_choice=cpu ;;
        --gpu) onnx_choice=gpu ;;
        *) echo "error: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

# Work from the repository root whatever the caller's directory.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"
UV="$VENV/bin/uv"
UV_VERSION="${UV_VERSION:-0.13.9}"
LOCK="requirements.lock"

say() { printf '==> %s\n' "$*"; }

say "project folders"
mkdir -p data logs configs/training configs/distillation configs/optimization configs/deployment

# The lock was compiled for Python 3.11 (see its header); another minor version may resolve differently.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [[ ! -x "$VENV_PY" ]]; then
    python_bin="$(find_python)" || {
        echo "error: Python 3.11 not found; install it or set PYTHON=/path/to/python3.11" >&2
        exit 1
    }
    say "creating .venv with $python_bin"
    "$python_bin" -m venv "$VENV"
else
    say ".venv exists ($("$VENV_PY" --version))"
    "$VENV_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || echo "warning: .venv is not Python 3.11, the version requirements.lock was compiled for; if the install" \
            "fails, remove .venv and run this script again" >&2
fi

# uv installs the lock fast and checks its hashes; `uv pip sync` leaves uv itself (and pip) in place.
if [[ ! -x "$UV" ]] || [[ "$("$UV" --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
    say "installing uv $UV_VERSION into .venv"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# A previous GPU setup left onnxruntime-gpu; remove it first so sync never has both packages writing one module.
if "$UV" pip show --python "$VENV_PY" --quiet onnxruntime-gpu >/dev/null 2>&1; then
    "$UV" pip uninstall --python "$VENV_PY" onnxruntime-gpu
fi
# sync = install exactly the lock and remove anything else, so a re-run repairs a drifted environment;
# --require-hashes refuses any file whose hash is not the locked one.
say "installing $LOCK"
"$UV" pip sync --require-hashes --python "$VENV_PY" "$LOCK"
# --no-build-isolation builds with the locked setuptools instead of downloading one.
say "installing mlcore (editable, no dependencies: they all come from the lock)"
"$UV" pip install --python "$VENV_PY" --no-deps --no-build-isolation -e .

# The browser for the Prefect UI test. Never `playwright install`: it downloads a browser build of its own, which an
# offline machine cannot, and the distribution's package is the one that gets security updates. Never fatal.
find_chromium() { command -v chromium || command -v chromium-browser || true; }
if [[ -n "${MLCORE_NO_CHROMIUM:-}" ]]; then
    say "chromium: skipped (MLCORE_NO_CHROMIUM)"
elif [[ -n "$(find_chromium)" ]]; then
    say "chromium: $(find_chromium)"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium (apt-get) for the Prefect UI test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
        echo "note: chromium could not be installed; the Prefect UI test will skip" >&2
    fi
else
    echo "note: no chromium on PATH (install the distribution's package, e.g. 'sudo apt-get install chromium');" \
        "the Prefect UI test skips without it" >&2
fi

if [[ "$onnx_choice" == auto ]]; then
    # timeout: nvidia-smi can hang when the driver is in a bad state.
    if command -v nvidia-smi >/dev/null 2>&1 && timeout 30 nvidia-smi -L >/dev/null 2>&1; then
        onnx_choice=gpu
    else
        onnx_choice=cpu
    fi
fi

if [[ "$onnx_choice" == gpu ]]; then
    locked_ort="$(sed -n 's/^onnxruntime==\([^ ]*\).*/\1/p' "$LOCK")"
    if [[ -z "$locked_ort" ]]; then
        echo "error: $LOCK pins no onnxruntime version; cannot pick onnxruntime-gpu" >&2
        exit 1
    fi
    say "NVIDIA GPU: replacing onnxruntime $locked_ort with onnxruntime-gpu (same module, never both)"
    "$UV" pip uninstall --python "$VENV_PY" onnxruntime
    # onnxruntime-gpu is not in the hashed lock, so pin its version to the locked CPU one. GPU builds sometimes
    # ship later than CPU ones: `<=` takes the exact version when it exists, else the newest older release.
    # The cuda/cudnn extras add the few CUDA libraries torch's wheels do not already bring (e.g. cuRAND).
    "$UV" pip install --python "$VENV_PY" "onnxruntime-gpu[cuda,cudnn]<=$locked_ort"
    gpu_ort="$("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')"
    if [[ "$gpu_ort" != "$locked_ort" ]]; then
        echo "note: onnxruntime-gpu $locked_ort is not released; installed $gpu_ort (lock: onnxruntime $locked_ort)"
    fi
else
    say "onnxruntime: CPU build from the lock"
fi

say "accelerator"
"$VENV_PY" - <<'EOF'
import onnxruntime
import torch

print(f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}")
print(f"onnxruntime {onnxruntime.__version__}: {', '.join(onnxruntime.get_available_providers())}")
if torch.cuda.is_available():
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        print(f"CUDA available: cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB")
else:
    print("No CUDA device visible to PyTorch.")
    print("CPU only: every step runs, slowly (teacher fine-tuning takes hours; use small configs to try things).")
EOF
say "done: activate with 'source .venv/bin/activate'"
