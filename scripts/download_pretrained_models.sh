#!/usr/bin/env bash
# Download the teachers' base weights, in Hugging Face format, at a pinned Hub revision, into
# ${MLCORE_MODELS_DIR:-<project root>/models}/<name>/, each file checked against the sha256 the Hub publishes and
# recorded in <name>/SHA256SUMS (the repository and revision in <name>/SOURCE.json). A folder whose SHA256SUMS still
# verifies, at the pinned revision, is not downloaded again, so the script is safe to re-run and works offline for
# folders copied in by hand.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/download_pretrained_models.sh [--verify-only | --dry-run] [all | NAME ...]

Models (NAME -> Hugging Face repository, pinned revision):
  grounding_dino_swint  IDEA-Research/grounding-dino-tiny   (Grounding DINO, Swin-T backbone)
  grounding_dino_swinb  IDEA-Research/grounding-dino-base   (Grounding DINO, Swin-B backbone)
  sam_vit_b             facebook/sam-vit-base
  sam_vit_l             facebook/sam-vit-large
  sam_vit_h             facebook/sam-vit-huge
  all                   every model above (the default)

Each model lands in $MLCORE_MODELS_DIR/NAME/ (default: models/NAME/ at the project root, where mlcore looks) with a
SHA256SUMS file readable by `sha256sum -c`, SOURCE.json (repository and revision) and .mlcore-weights.json (the
weights' sha256, so mlcore identifies the base without hashing it again). Only PyTorch weights are fetched
(safetensors when published); TF/Flax/ONNX copies are skipped.

Each repository is pinned to one Hub commit, so every machine gets the same weights; adapters record the base's
revision and weights sha256 and refuse any other base. MLCORE_REVISION_<NAME> (e.g. MLCORE_REVISION_SAM_VIT_B=main)
downloads another revision.

Options:
  --verify-only  check existing folders against their SHA256SUMS and exit; never uses the network
  --dry-run      print each model's repository, revision and target folder, and exit; never uses the network
  --help         show this text

Without internet: run this script on a machine that has it, copy the model folders (with their SHA256SUMS) into
$MLCORE_MODELS_DIR/ here, then check them with --verify-only.

Environment:
  MLCORE_MODELS_DIR        target folder (default: models/ at the project root)
  MLCORE_REVISION_<NAME>   Hub revision (commit, branch or tag) instead of the pinned one
  MLCORE_PYTHON            Python with huggingface_hub (default: .venv/bin/python, else python3)
  MLCORE_DOWNLOAD_TIMEOUT  limit for the whole download, as for timeout(1) (default: 6h)
  HF_ENDPOINT, HF_TOKEN    the usual Hugging Face Hub settings
EOF
}

ALL_MODELS=(grounding_dino_swint grounding_dino_swinb sam_vit_b sam_vit_l sam_vit_h)

# The folder names are what mlcore's presets refer to; the repositories are the Hub's Transformers ports.
repo_for() {
    case "$1" in
        grounding_dino_swint) echo "IDEA-Research/grounding-dino-tiny" ;;
        grounding_dino_swinb) echo "IDEA-Research/grounding-dino-base" ;;
        sam_vit_b) echo "facebook/sam-vit-base" ;;
        sam_vit_l) echo "facebook/sam-vit-large" ;;
        sam_vit_h) echo "facebook/sam-vit-huge" ;;
        *) return 1 ;;
    esac
}

# The Hub commits the weights are pinned to (the latest of each repository when pinned; each commit is also what
# public projects pin and HF snapshot folders name). Change one here, deliberately: adapters trained on the old
# weights will then refuse the new ones.
pinned_revision() {
    case "$1" in
        grounding_dino_swint) echo "a2bb814dd30d776dcf7e30523b00659f4f141c71" ;;
        grounding_dino_swinb) echo "12bdfa3120f3e7ec7b434d90674b3396eccf88eb" ;;
        sam_vit_b) echo "70c1a07f894ebb5b307fd9eaaee97b9dfc16068f" ;;
        sam_vit_l) echo "6851e0441005b0fb96f2cc4dfac472f3d1b14af1" ;;
        sam_vit_h) echo "87aecf0df4ce6b30cd7de76e87673c49644bdf67" ;;
        *) return 1 ;;
    esac
}

# MLCORE_REVISION_<NAME> overrides the pin (upper-case folder name).
revision_for() {
    local variable
    variable="MLCORE_REVISION_$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')"
    if [[ -n "${!variable:-}" ]]; then echo "${!variable}"; else pinned_revision "$1"; fi
}

# The revision a finished download recorded in SOURCE.json (empty when there is none).
recorded_revision() {
    [[ -f "$1/SOURCE.json" ]] || return 0
    sed -n 's/^ *"revision": *"\([^"]*\)".*/\1/p' "$1/SOURCE.json" | head -n 1
}

verify_only=false
dry_run=false
requested=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --verify-only) verify_only=true ;;
        --dry-run) dry_run=true ;;
        -*) echo "error: unknown option '$arg' (see --help)" >&2; exit 2 ;;
        all) requested+=("${ALL_MODELS[@]}") ;;
        *)
            if ! repo_for "$arg" >/dev/null; then
                echo "error: unknown model '$arg'; choose from: all ${ALL_MODELS[*]}" >&2
                exit 2
            fi
            requested+=("$arg")
            ;;
    esac
done
[[ ${#requested[@]} -gt 0 ]] || requested=("${ALL_MODELS[@]}")

# Keep the first occurrence of each name ("all sam_vit_b" fetches sam_vit_b once).
models=()
for name in "${requested[@]}"; do
    [[ " ${models[*]-} " == *" $name "* ]] || models+=("$name")
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The same default as mlcore's loader (mlcore/teachers/weights.py): models/ at the project root, not the current
# directory.
MODELS_DIR="${MLCORE_MODELS_DIR:-$ROOT/models}"

if $dry_run; then
    echo "models folder: $MODELS_DIR"
    for name in "${models[@]}"; do
        echo "$name: $(repo_for "$name")@$(revision_for "$name") -> $MODELS_DIR/$name"
    done
    exit 0
fi

sha256_check() {
    # GNU coreutils on Linux; shasum where it is missing (macOS).
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum --check --quiet --strict "$@"
    else
        shasum --algorithm 256 --check --quiet --strict "$@"
    fi
}

# Verify what is already there before any network access: verified folders are skipped, others are (re)fetched.
to_download=()
failed=()
for name in "${models[@]}"; do
    folder="$MODELS_DIR/$name"
    wanted="$(revision_for "$name")"
    if [[ -f "$folder/SHA256SUMS" ]]; then
        if (cd "$folder" && sha256_check SHA256SUMS); then
            recorded="$(recorded_revision "$folder")"
            # Only a full commit id can be compared offline; a branch or tag given by hand is taken as it is.
            if [[ "$wanted" =~ ^[0-9a-f]{40}$ && -n "$recorded" && "$recorded" != "$wanted" ]]; then
                echo "$name: $folder verifies, but holds revision $recorded, not $wanted" >&2
                if $verify_only; then
                    echo "  fix: download it again (without --verify-only), or keep it with" \
                        "MLCORE_REVISION_$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')=$recorded" >&2
                    failed+=("$name")
                fi
                to_download+=("$name")
                continue
            fi
            echo "$name: $folder verified against SHA256SUMS${recorded:+ (revision $recorded)}"
            continue
        fi
        echo "$name: $folder does NOT match its SHA256SUMS (files listed above: changed, truncated or missing)" >&2
        failed+=("$name")
    elif $verify_only; then
        echo "$name: $folder has no SHA256SUMS (not downloaded, or the download did not finish)" >&2
        failed+=("$name")
    fi
    to_download+=("$name")
done

if $verify_only; then
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "verification failed for: ${failed[*]} (run without --verify-only to download them again)" >&2
        exit 1
    fi
    exit 0
fi
[[ ${#to_download[@]} -gt 0 ]] || exit 0

PY="${MLCORE_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi
fi
HELPER="$ROOT/scripts/_download_models.py"

# Short Hub timeouts so an offline machine fails in seconds instead of hanging. The Docker image sets
# HF_HUB_OFFLINE=1 for the pipeline; downloading is this script's whole point, so it is switched off here.
export HF_HUB_ETAG_TIMEOUT="${HF_HUB_ETAG_TIMEOUT:-10}"
export HF_HUB_DOWNLOAD_TIMEOUT="${HF_HUB_DOWNLOAD_TIMEOUT:-60}"
export HF_HUB_DISABLE_TELEMETRY=1
export HF_HUB_OFFLINE=0

# timeout(1) guards against what the Hub timeouts cannot bound, e.g. a DNS lookup that never answers.
first_repo="$(repo_for "${to_download[0]}")"
check_rc=0
reason="$(timeout 30 "$PY" "$HELPER" --check "$first_repo" 2>&1)" || check_rc=$?
if [[ $check_rc -ne 0 ]]; then
    [[ $check_rc -ne 124 ]] || reason="no answer within 30 s"
    if [[ $check_rc -eq 3 ]]; then
        echo "error: $reason" >&2
    else
        cat >&2 <<EOF
error: cannot reach the Hugging Face Hub: ${reason:-unknown error}
  fix: copy the folders from a machine with internet into $MODELS_DIR/<name>/ (here: ${to_download[*]}).
       There: scripts/download_pretrained_models.sh ${to_download[*]}   (each folder gets a SHA256SUMS)
       Here:  scripts/download_pretrained_models.sh --verify-only ${to_download[*]}
EOF
    fi
    exit 1
fi

pairs=()
for name in "${to_download[@]}"; do
    pairs+=("$name=$(repo_for "$name")@$(revision_for "$name")")
done
timeout "${MLCORE_DOWNLOAD_TIMEOUT:-6h}" "$PY" "$HELPER" --models-dir "$MODELS_DIR" "${pairs[@]}"
