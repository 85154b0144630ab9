"""ultralytics is configured in one place: offline, no auto-install, every file it writes under one home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.students import ultralytics_setup

SCRIPT = """
from mlcore.students.ultralytics_setup import configure_ultralytics, ultralytics_module
first = configure_ultralytics()
assert configure_ultralytics() == first  # idempotent
ultralytics = ultralytics_module()
from ultralytics.utils import AUTOINSTALL, ONLINE
assert not ONLINE and not AUTOINSTALL
print(first)
"""


def run_fresh(home: Path, **env: str) -> Path:
    """configure_ultralytics in a new process (ultralytics reads its environment once, at import)."""
    clean = {key: value for key, value in os.environ.items()
             if key not in ("YOLO_CONFIG_DIR", "YOLO_OFFLINE", "YOLO_AUTOINSTALL", "MLCORE_HOME")}
    clean.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=clean, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def files_under(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def test_default_home_holds_ultralytics_settings_with_sync_off(tmp_path: Path) -> None:
    home = run_fresh(tmp_path)
    assert home == tmp_path / ".cache" / "mlcore" / "ultralytics"
    assert files_under(tmp_path) == [Path(".cache/mlcore/ultralytics/Ultralytics/settings.json")]
    settings = json.loads((home / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is False
    for key in ("datasets_dir", "weights_dir", "runs_dir"):
        assert Path(settings[key]).is_relative_to(home)
    assert not any(settings[name] for name in ("clearml", "comet", "dvc", "mlflow", "wandb"))


def test_mlcore_home_moves_it(tmp_path: Path) -> None:
    assert run_fresh(tmp_path, MLCORE_HOME=str(tmp_path / "mlhome")) == tmp_path / "mlhome" / "ultralytics"
    assert files_under(tmp_path) == [Path("mlhome/ultralytics/Ultralytics/settings.json")]


def test_in_process_yolo_config_dir_wins(ultralytics_home: Path) -> None:
    """The session fixture set YOLO_CONFIG_DIR before configuring: ultralytics' settings live there."""
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
    from ultralytics.utils import ONLINE, SETTINGS, USER_CONFIG_DIR

    assert not ONLINE and SETTINGS["sync"] is False
    assert Path(SETTINGS["runs_dir"]).is_relative_to(ultralytics_home)
    if not ultralytics_setup.imported_before_configuring:  # another test module may import ultralytics first
        assert ultralytics_home == Path(os.environ["YOLO_CONFIG_DIR"]) == USER_CONFIG_DIR.parent
    assert ultralytics_setup.configure_ultralytics() == ultralytics_home


def test_default_home_follows_mlcore_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLCORE_HOME", str(tmp_path))
    assert ultralytics_setup.default_home() == tmp_path / "ultralytics"
    monkeypatch.delenv("MLCORE_HOME")
    assert ultralytics_setup.default_home() == Path.home() / ".cache" / "mlcore" / "ultralytics"
