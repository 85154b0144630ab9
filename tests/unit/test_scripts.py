"""scripts/: the model download script offline, its checksum checks, and a download from a local fake Hub."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD = ROOT / "scripts" / "download_pretrained_models.sh"
SETUP = ROOT / "scripts" / "setup_environment.sh"
CLEAR_MESSAGE = "cannot reach the Hugging Face Hub"


def run_script(script: Path, *args: str, models_dir: Path, endpoint: str = "http://127.0.0.1:9", timeout: float = 60):
    """Run a script with the Hub pointed at `endpoint` (default: a closed port) and this interpreter's packages."""
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "MLCORE_MODELS_DIR": str(models_dir),
        "MLCORE_PYTHON": sys.executable,
        "HF_HOME": str(models_dir.parent / "hf_home"),  # keep the Hub client's token/cache lookups in the sandbox
    }
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def make_verified_folder(models_dir: Path, name: str = "sam_vit_b") -> Path:
    folder = models_dir / name
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "sam"}\n')
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    (folder / "sub" / "extra.txt").write_text("x\n")
    lines = [
        f"{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}  {rel}\n"
        for rel in ("config.json", "model.safetensors", "sub/extra.txt")
    ]
    (folder / "SHA256SUMS").write_text("".join(lines))
    return folder


def test_offline_download_fails_fast_with_a_clear_message(tmp_path):
    models = tmp_path / "models"
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models)  # times out (fails the test) past 60 s
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert CLEAR_MESSAGE in out
    assert "copy the folders from a machine with internet" in out
    assert f"{models}/<name>/" in out
    assert "--verify-only sam_vit_b" in out
    assert not (models / "sam_vit_b").exists()


def test_verify_only_accepts_a_matching_folder_and_reports_a_tampered_file(tmp_path):
    models = tmp_path / "models"
    folder = make_verified_folder(models)

    ok = run_script(DOWNLOAD, "--verify-only", "sam_vit_b", models_dir=models)
    assert ok.returncode == 0, ok.stderr
    assert "sam_vit_b" in ok.stdout and "verified" in ok.stdout

    with open(folder / "model.safetensors", "r+b") as handle:
        handle.write(b"tampered")
    bad = run_script(DOWNLOAD, "--verify-only", "sam_vit_b", models_dir=models)
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1
    assert "model.safetensors: FAILED" in out
    assert "config.json: FAILED" not in out
    assert "does NOT match its SHA256SUMS" in out


def test_verify_only_reports_missing_folders(tmp_path):
    result = run_script(DOWNLOAD, "--verify-only", "sam_vit_l", models_dir=tmp_path / "models")
    assert result.returncode == 1
    assert "sam_vit_l" in result.stderr and "no SHA256SUMS" in result.stderr


def test_a_verified_folder_is_not_downloaded_again_even_offline(tmp_path):
    models = tmp_path / "models"
    make_verified_folder(models)
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models)
    assert result.returncode == 0, result.stderr
    assert CLEAR_MESSAGE not in result.stderr


def test_unknown_model_names_are_refused_with_the_choices(tmp_path):
    result = run_script(DOWNLOAD, "sam_vit_xl", models_dir=tmp_path / "models")
    assert result.returncode == 2
    assert "sam_vit_xl" in result.stderr and "grounding_dino_swint" in result.stderr


@pytest.mark.parametrize("script", [DOWNLOAD, SETUP], ids=lambda p: p.name)
def test_help_exits_zero_without_side_effects(tmp_path, script):
    result = run_script(script, "--help", models_dir=tmp_path / "models")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage:")
    assert not (tmp_path / "models").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shell_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", str(DOWNLOAD), str(SETUP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- a download from a fake Hub on loopback -------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The few Hub endpoints huggingface_hub uses to download a model: model info, tree listing, file resolve."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repo: str, files: dict[str, bytes], lfs: set[str]):
        self.repo, self.files, self.lfs = repo, files, lfs
        self.served: list[str] = []
        self.corrupted: dict[str, bytes] = {}  # bodies served instead of the published file (hashes unchanged)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                hub.respond(self, body=False)

            def do_GET(self):
                hub.respond(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def entry(self, path: str) -> dict:
        data = self.files[path]
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
        blob = git_blob_sha1(pointer.encode() if path in self.lfs else data)
        lfs = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
        return {"path": path, "size": len(data), "blob": blob, "lfs": lfs if path in self.lfs else None}

    def respond(self, handler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        model_api = f"/api/models/{self.repo}"
        resolve = f"/{self.repo}/resolve/"
        headers = {"X-Repo-Commit": self.COMMIT}
        if path in (model_api, f"{model_api}/revision/main", f"{model_api}/revision/{self.COMMIT}"):
            siblings = [
                {"rfilename": e["path"], "size": e["size"], "blobId": e["blob"], "lfs": e["lfs"]}
                for e in map(self.entry, self.files)
            ]
            payload = json.dumps({"id": self.repo, "modelId": self.repo, "sha": self.COMMIT, "siblings": siblings})
            return self.send(handler, 200, payload.encode(), {"Content-Type": "application/json", **headers}, body)
        if path.startswith(f"{model_api}/tree/"):
            tree = []
            for e in map(self.entry, self.files):
                item = {"type": "file", "path": e["path"], "size": e["size"], "oid": e["blob"]}
                if e["lfs"]:
                    item["lfs"] = {"oid": e["lfs"]["sha256"], "size": e["size"], "pointerSize": e["lfs"]["pointerSize"]}
                tree.append(item)
            return self.send(handler, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
        if path.startswith(resolve):
            name = path[len(resolve) :].split("/", 1)[1]
            if name in self.files:
                self.served.append(name)
                e = self.entry(name)
                etag = e["lfs"]["sha256"] if e["lfs"] else e["blob"]
                data = self.corrupted.get(name, self.files[name])
                return self.send(handler, 200, data, {"ETag": f'"{etag}"', **headers}, body)
        return self.send(handler, 404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, body)

    @staticmethod
    def send(handler, status: int, data: bytes, headers: dict, body: bool) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    files = {
        "config.json": b'{"model_type": "sam"}\n',
        "model.safetensors": os.urandom(50_000),
        "pytorch_model.bin": os.urandom(1000),  # skipped: safetensors is there
        "tf_model.h5": os.urandom(1000),  # skipped: another framework
        "README.md": b"# tiny\n",
    }
    with FakeHub("facebook/sam-vit-base", files, lfs={"model.safetensors", "pytorch_model.bin", "tf_model.h5"}) as hub:
        yield hub


def test_download_verifies_against_published_hashes_and_writes_sha256sums(tmp_path, fake_hub):
    models = tmp_path / "models"
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    folder = models / "sam_vit_b"
    assert (folder / "model.safetensors").read_bytes() == fake_hub.files["model.safetensors"]
    assert not (folder / "pytorch_model.bin").exists() and not (folder / "tf_model.h5").exists()
    listed = sorted(line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert listed == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((folder / "SOURCE.json").read_text())["revision"] == FakeHub.COMMIT
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder).returncode == 0

    # Second run: verified locally, nothing fetched.
    fake_hub.served.clear()
    again = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120)
    assert again.returncode == 0 and fake_hub.served == []

    # A tampered weight file is detected and fetched again.
    (folder / "model.safetensors").write_bytes(b"not the weights")
    repaired = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "does NOT match its SHA256SUMS" in repaired.stderr
    assert (folder / "model.safetensors").read_bytes() == fake_hub.files["model.safetensors"]


def test_download_refuses_files_that_do_not_match_the_published_hash(tmp_path, fake_hub):
    fake_hub.corrupted["model.safetensors"] = b"corrupted in transit" + fake_hub.files["model.safetensors"][20:]
    models = tmp_path / "models"
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120)
    assert result.returncode != 0
    assert "model.safetensors" in result.stderr
    assert not (models / "sam_vit_b" / "SHA256SUMS").exists()
