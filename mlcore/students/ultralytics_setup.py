"""ultralytics' offline settings, in one place: every mlcore module imports ultralytics through `ultralytics_module()`.

ultralytics reads its environment once, when first imported: `YOLO_OFFLINE` (skip its DNS "am I online" probe and
telemetry), `YOLO_AUTOINSTALL` (otherwise it pip-installs missing packages at run time) and `YOLO_CONFIG_DIR` (where
it writes `Ultralytics/settings.json` on import, the only file its import writes). After import, its persistent
settings turn sync (telemetry) and the logger integrations off and move datasets/weights/runs into the same home,
away from the git checkout it would otherwise pick.

The home is `$YOLO_CONFIG_DIR` when set (tests point it into a temp dir), else `$MLCORE_HOME/ultralytics`, else
`~/.cache/mlcore/ultralytics`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from mlcore.logs import get_logger

log = get_logger(__name__)

MLCORE_HOME_ENV = "MLCORE_HOME"
_DISABLED_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_configured: Path | None = None
imported_before_configuring = False  # True when something imported ultralytics first (its settings file stays put)


def default_home() -> Path:
    """Where ultralytics keeps its settings unless YOLO_CONFIG_DIR says otherwise."""
    if mlcore_home := os.environ.get(MLCORE_HOME_ENV):
        return Path(mlcore_home).expanduser() / "ultralytics"
    return Path.home() / ".cache" / "mlcore" / "ultralytics"


def configure_ultralytics(home: Path | None = None) -> Path:
    """Make ultralytics offline and keep its files under one home; returns that home. Idempotent.

    `home` is used only when YOLO_CONFIG_DIR is not already set (setdefault: a user's or a test's choice wins).
    """
    global _configured, imported_before_configuring
    if _configured is not None:
        return _configured
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    already_imported = imported_before_configuring = "ultralytics" in sys.modules
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(home or default_home()))).expanduser()
    if already_imported:
        _force_offline_after_import()

    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if already_imported and USER_CONFIG_DIR.parent.resolve() != config_dir.resolve():
        log.warning("ultralytics was imported before mlcore configured it: its settings stay in %s, not %s",
                    USER_CONFIG_DIR, config_dir)
    root = USER_CONFIG_DIR.parent
    wanted = {"sync": False, "vscode_msg": False, "openvino_msg": False,
              "datasets_dir": str(root / "datasets"), "weights_dir": str(root / "weights"),
              "runs_dir": str(root / "runs"), **dict.fromkeys(_DISABLED_INTEGRATIONS, False)}
    changed = {key: value for key, value in wanted.items() if SETTINGS.get(key) != value}
    if changed:  # each update rewrites settings.json; skip when nothing changes
        SETTINGS.update(changed)
    _configured = root
    return root


def ultralytics_module() -> ModuleType:
    """`import ultralytics`, configured first."""
    configure_ultralytics()
    import ultralytics

    return ultralytics


@contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """ultralytics logs its banners and notes at INFO on stdout ("Overriding model.yaml nc=80", export banners, a
    netron link); under mlcore's commands stdout is ours. Warnings and errors still show."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _force_offline_after_import() -> None:
    """ultralytics copies ONLINE / AUTOINSTALL into module constants at import: an early import must not keep them."""
    for name in ("ultralytics.utils", "ultralytics.utils.checks", "ultralytics.utils.events"):
        module = sys.modules.get(name)
        if module is None:
            continue
        if hasattr(module, "ONLINE"):
            module.ONLINE = False
        if hasattr(module, "AUTOINSTALL"):
            module.AUTOINSTALL = False
