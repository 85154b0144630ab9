"""Fetch Hugging Face model repositories into folders and prove each file is the one the Hub published.

Called by scripts/download_pretrained_models.sh, which owns the model list, the time limits and the check of folders
that are already there. Two modes:

    _download_models.py --check REPO                          # can the Hub be reached? exit 0 / 1 (3: no hub)
    _download_models.py --models-dir DIR NAME=REPO[@REV] ...  # download, verify, write DIR/NAME/SHA256SUMS

REV is the Hub revision to fetch (the script pins a commit per repository; default main). Verification: large (LFS)
files against the sha256 the Hub publishes for them; small files stored in git against their git blob id (a sha1 of
the content). Only then are SOURCE.json (repository, resolved commit), .mlcore-weights.json (the weight files'
sha256 by size and mtime, read by mlcore/teachers/weights.py in the same format) and SHA256SUMS written, so the
presence of SHA256SUMS means "complete".
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Other frameworks' copies of the same weights: large and never read by transformers' PyTorch classes.
SKIPPED_PATTERNS = (
    ".gitattributes",
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
    "coreml/*",
    "onnx/*",
    "openvino/*",
    "flax_model*",
    "tf_model*",
    "rust_model*",
)
# With safetensors published, pickled copies are the same tensors twice (and unsafe to load).
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth")
# The weight files mlcore identifies a base by (mlcore/teachers/weights.py: weight_files).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
HASHES_FILE = ".mlcore-weights.json"


@dataclass(frozen=True)
class HubFile:
    """One file of a repository as the Hub describes it."""

    path: str
    size: int | None
    blob_id: str | None  # git sha1 of the content (for LFS files: of the pointer, so unused)
    lfs_sha256: str | None  # sha256 of the real content, for files stored in LFS


@dataclass(frozen=True)
class LocalDigest:
    size: int
    sha256: str
    git_blob_sha1: str


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(exc).__name__}: {message}"[:300]


def digest_file(path: Path, chunk_size: int = 1 << 22) -> LocalDigest:
    """sha256 and git blob sha1 in one pass over the file."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return LocalDigest(size=size, sha256=sha256.hexdigest(), git_blob_sha1=git_sha1.hexdigest())


def matches(digest: LocalDigest, hub_file: HubFile) -> bool:
    if hub_file.lfs_sha256 is not None:
        return digest.sha256 == hub_file.lfs_sha256 and (hub_file.size is None or digest.size == hub_file.size)
    if hub_file.blob_id is not None:
        return digest.git_blob_sha1 == hub_file.blob_id
    return hub_file.size is not None and digest.size == hub_file.size


def select_files(files: list[HubFile]) -> list[HubFile]:
    """The files a PyTorch user needs: configs, tokenizer/processor files, one copy of the weights."""

    def skipped(path: str, patterns: tuple[str, ...]) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(name, pattern) for pattern in patterns)

    kept = [f for f in files if not skipped(f.path, SKIPPED_PATTERNS)]
    if any(f.path.endswith(".safetensors") for f in kept):
        kept = [f for f in kept if not skipped(f.path, PICKLE_WEIGHTS)]
    return kept


def hub_files(info: Any) -> list[HubFile]:
    return [
        HubFile(
            path=s.rfilename,
            size=s.lfs.size if s.lfs is not None else s.size,
            blob_id=s.blob_id,
            lfs_sha256=s.lfs.sha256 if s.lfs is not None else None,
        )
        for s in info.siblings or []
    ]


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def check(repo: str) -> int:
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        print(f"huggingface_hub is not installed for {sys.executable} ({exc}); run scripts/setup_environment.sh")
        return 3
    try:
        HfApi().model_info(repo, timeout=10)
    except Exception as exc:  # any failure here means "cannot download"; the message says which
        print(one_line(exc))
        return 1
    return 0


def download(name: str, repo: str, models_dir: Path, revision: str | None = None) -> bool:
    from huggingface_hub import HfApi, snapshot_download

    target = models_dir / name
    info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=30)
    files = select_files(hub_files(info))
    print(f"{name}: {repo} @ {info.sha[:12]}, {len(files)} files, {sum(f.size or 0 for f in files) / 2**20:.0f} MiB")

    # SHA256SUMS marks a finished, verified download: drop a stale one until this download has proved itself.
    (target / "SHA256SUMS").unlink(missing_ok=True)
    # A changed or truncated file would otherwise be kept as it is: remove it so the download replaces it.
    for hub_file in files:
        local = target / hub_file.path
        if local.is_file() and not matches(digest_file(local), hub_file):
            print(f"{name}: replacing {hub_file.path} (does not match the Hub)")
            local.unlink()

    # Pinning the revision to the sha we just read keeps files and published hashes from the same commit.
    snapshot_download(repo, revision=info.sha, local_dir=target, allow_patterns=[f.path for f in files])

    sums, bad, weights = [], [], {}
    for hub_file in files:
        local = target / hub_file.path
        digest = digest_file(local) if local.is_file() else None
        if digest is None or not matches(digest, hub_file):
            bad.append(hub_file.path)
            continue
        sums.append(f"{digest.sha256}  {hub_file.path}\n")
        if "/" not in hub_file.path and any(fnmatch.fnmatch(hub_file.path, p) for p in WEIGHT_PATTERNS):
            stat = local.stat()
            weights[hub_file.path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.sha256}
    if bad:
        listed = ", ".join(bad)
        print(f"error: {name}: not as published on the Hub (run again to fetch them anew): {listed}", file=sys.stderr)
        return False

    source = {"repo": repo, "revision": info.sha, "requested_revision": revision or "main"}
    write_atomic(target / "SOURCE.json", json.dumps(source, indent=2) + "\n")
    write_atomic(target / HASHES_FILE, json.dumps({"files": weights}, indent=2) + "\n")
    write_atomic(target / "SHA256SUMS", "".join(sorted(sums, key=lambda line: line.split("  ", 1)[1])))
    print(f"{name}: verified {len(sums)} files, wrote {target / 'SHA256SUMS'}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="REPO", help="only test that the Hub answers for REPO")
    default_dir = os.environ.get("MLCORE_MODELS_DIR") or Path(__file__).resolve().parents[1] / "models"
    parser.add_argument("--models-dir", type=Path, default=Path(default_dir))
    parser.add_argument("models", nargs="*", metavar="NAME=REPO[@REV]")
    args = parser.parse_args(argv)

    if args.check:
        return check(args.check)
    failed = []
    for pair in args.models:
        name, sep, spec = pair.partition("=")
        repo, _, revision = spec.partition("@")
        if not sep or not name or not repo:
            parser.error(f"expected NAME=REPO[@REV], got {pair!r}")
        try:
            ok = download(name, repo, args.models_dir, revision or None)
        except Exception as exc:  # report per model and carry on with the others
            print(f"error: {name}: download from {repo}@{revision or 'main'} failed: {one_line(exc)}",
                  file=sys.stderr)
            ok = False
        if not ok:
            failed.append(name)
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
