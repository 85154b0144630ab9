"""scripts/: the model download script offline, its checksum checks, its pinned revisions and default folder, and a
download from a local fake Hub that mlcore's loader then identifies by revision and sha256 without rehashing."""

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


def run_script(script: Path, *args: str, models_dir: Path | None, endpoint: str = "http://127.0.0.1:9",
               timeout: float = 60, cwd: Path = ROOT, **variables: str):
    """Run a script with the Hub pointed at `endpoint` (default: a closed port) and this interpreter's packages;
    models_dir None: MLCORE_MODELS_DIR unset (the script's default)."""
    env = {
        **{key: value for key, value in os.environ.items()
           if key != "MLCORE_MODELS_DIR" and not key.startswith("MLCORE_REVISION_")},
        "HF_ENDPOINT": endpoint,
        "MLCORE_PYTHON": sys.executable,
        "HF_HOME": str((models_dir or cwd).parent / "hf_home"),  # keep the Hub client's lookups in the sandbox
        **variables,
    }
    if models_dir is not None:
        env["MLCORE_MODELS_DIR"] = str(models_dir)
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
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
        self.requested: list[str] = []  # every path asked for (revisions show in the model-info paths)
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
        self.requested.append(path)
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


AT_FAKE_COMMIT = {"MLCORE_REVISION_SAM_VIT_B": FakeHub.COMMIT}  # the fake Hub has one commit, not the pinned one


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
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120, **AT_FAKE_COMMIT)
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
    again = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120, **AT_FAKE_COMMIT)
    assert again.returncode == 0 and fake_hub.served == []

    # A tampered weight file is detected and fetched again.
    (folder / "model.safetensors").write_bytes(b"not the weights")
    repaired = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120,
                          **AT_FAKE_COMMIT)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "does NOT match its SHA256SUMS" in repaired.stderr
    assert (folder / "model.safetensors").read_bytes() == fake_hub.files["model.safetensors"]


def test_download_refuses_files_that_do_not_match_the_published_hash(tmp_path, fake_hub):
    fake_hub.corrupted["model.safetensors"] = b"corrupted in transit" + fake_hub.files["model.safetensors"][20:]
    models = tmp_path / "models"
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=fake_hub.url, timeout=120, **AT_FAKE_COMMIT)
    assert result.returncode != 0
    assert "model.safetensors" in result.stderr
    assert not (models / "sam_vit_b" / "SHA256SUMS").exists()


# --- pinned revisions and the default folder ----------------------------------------------------------------------

PINNED = {
    "grounding_dino_swint": ("IDEA-Research/grounding-dino-tiny", "a2bb814dd30d776dcf7e30523b00659f4f141c71"),
    "grounding_dino_swinb": ("IDEA-Research/grounding-dino-base", "12bdfa3120f3e7ec7b434d90674b3396eccf88eb"),
    "sam_vit_b": ("facebook/sam-vit-base", "70c1a07f894ebb5b307fd9eaaee97b9dfc16068f"),
    "sam_vit_l": ("facebook/sam-vit-large", "6851e0441005b0fb96f2cc4dfac472f3d1b14af1"),
    "sam_vit_h": ("facebook/sam-vit-huge", "87aecf0df4ce6b30cd7de76e87673c49644bdf67"),
}


def dry_run(tmp_path: Path, *args: str, models_dir: Path | None = None, **variables: str) -> dict[str, str]:
    result = run_script(DOWNLOAD, "--dry-run", *args, models_dir=models_dir, cwd=tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    return lines


def test_every_model_is_pinned_to_a_commit_and_the_presets_name_the_same_repositories(tmp_path: Path) -> None:
    from mlcore.teachers.presets import PRESETS

    plan = dry_run(tmp_path)
    models = ROOT / "models"
    assert plan.pop("models folder") == str(models)
    assert plan == {name: f"{repo}@{revision} -> {models}/{name}" for name, (repo, revision) in PINNED.items()}
    downloaded = {preset.folder: preset.hub_repository for registry in PRESETS.values()
                  for preset in registry.values() if preset.needs_weights and not preset.bundled}
    assert downloaded == {name: repo for name, (repo, _) in PINNED.items()}
    assert not (tmp_path / "models").exists()  # neither the current directory nor anything else was written


def test_the_script_and_the_loader_default_to_models_at_the_project_root_and_follow_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcore.teachers import weights

    assert weights.project_models_dir() == ROOT / "models" == weights.DEFAULT_MODELS_DIR
    monkeypatch.delenv("MLCORE_MODELS_DIR", raising=False)
    assert weights.models_dir() == ROOT / "models"
    assert dry_run(tmp_path, "sam_vit_b")["sam_vit_b"].endswith(f"-> {ROOT}/models/sam_vit_b")

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("MLCORE_MODELS_DIR", str(elsewhere))
    assert weights.models_dir() == elsewhere
    assert dry_run(tmp_path, "sam_vit_b", models_dir=elsewhere)["sam_vit_b"].endswith(f"-> {elsewhere}/sam_vit_b")
    # The README says the same.
    readme = (ROOT / "README.md").read_text()
    paragraph = readme.split("## Pretrained weights", 1)[1].split("\n## ", 1)[0]
    assert "`models/` at the project root" in paragraph and "MLCORE_MODELS_DIR" in paragraph


def test_a_revision_variable_overrides_the_pin(tmp_path: Path) -> None:
    plan = dry_run(tmp_path, "sam_vit_b", MLCORE_REVISION_SAM_VIT_B="main")
    assert plan["sam_vit_b"].startswith("facebook/sam-vit-base@main ->")


def test_the_download_asks_the_hub_for_the_pinned_revision(tmp_path: Path, fake_hub) -> None:
    result = run_script(DOWNLOAD, "sam_vit_b", models_dir=tmp_path / "models", endpoint=fake_hub.url, timeout=120)
    assert result.returncode != 0  # the fake Hub has only its own commit
    pinned = PINNED["sam_vit_b"][1]
    assert f"/api/models/facebook/sam-vit-base/revision/{pinned}" in fake_hub.requested
    assert f"facebook/sam-vit-base@{pinned} failed" in result.stderr
    assert not fake_hub.served and not (tmp_path / "models" / "sam_vit_b" / "SHA256SUMS").exists()


def test_verify_only_reports_a_folder_of_another_revision(tmp_path: Path) -> None:
    models = tmp_path / "models"
    folder = make_verified_folder(models)
    (folder / "SOURCE.json").write_text(json.dumps({"repo": "facebook/sam-vit-base", "revision": "0" * 40}, indent=2))
    result = run_script(DOWNLOAD, "--verify-only", "sam_vit_b", models_dir=models)
    assert result.returncode == 1
    assert f"holds revision {'0' * 40}, not {PINNED['sam_vit_b'][1]}" in result.stderr
    assert f"MLCORE_REVISION_SAM_VIT_B={'0' * 40}" in result.stderr
    kept = run_script(DOWNLOAD, "--verify-only", "sam_vit_b", models_dir=models, MLCORE_REVISION_SAM_VIT_B="0" * 40)
    assert kept.returncode == 0, kept.stderr


def test_a_downloaded_folder_is_identified_by_the_loader_without_hashing_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path end to end: a tiny SAM saved in Hugging Face format, served by the fake Hub, downloaded by the
    script, loaded by mlcore: its base records the revision and the weights' sha256 that the script wrote."""
    from mlcore.teachers import load_sam, weights

    source = tmp_path / "published"
    load_sam("tiny").model.save_pretrained(source)
    files = {path.name: path.read_bytes() for path in source.iterdir()}
    with FakeHub("facebook/sam-vit-base", files, lfs={"model.safetensors"}) as hub:
        models = tmp_path / "models"
        result = run_script(DOWNLOAD, "sam_vit_b", models_dir=models, endpoint=hub.url, timeout=120, **AT_FAKE_COMMIT)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = models / "sam_vit_b"
    assert json.loads((folder / "SOURCE.json").read_text())["revision"] == FakeHub.COMMIT
    published_sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert json.loads((folder / ".mlcore-weights.json").read_text())["files"]["model.safetensors"]["sha256"] == \
        published_sha

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(weights, "sha256_file", no_hashing)
    base = load_sam("sam_vit_b", models).base_weights
    assert (base.repo, base.revision, base.weights_sha256) == ("facebook/sam-vit-base", FakeHub.COMMIT, published_sha)
