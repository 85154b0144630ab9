"""The shipped, commented YAML templates and their `{{placeholder}}` filling.

Placeholders stand where dataset facts go (class names, split paths, ...). In a template each one is a whole, quoted
value (`class_names: "{{class_names}}"`) so the file is valid YAML before it is filled; the loader treats a value that
is still exactly `"{{name}}"` as "not set" (see `mlcore.config.loader`). Filling replaces the quoted placeholder with
the value written as inline YAML (JSON syntax, which YAML reads), so lists and numbers keep their types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlcore.errors import ConfigError

TEMPLATE_SUFFIX = ".template.yaml"

# Every placeholder a template may use; `mlcore validate --generate-configs` supplies the values.
PLACEHOLDERS: dict[str, str] = {
    "class_names": "category names in COCO category-id order (list of strings)",
    "num_classes": "number of categories (int)",
    "annotation_mode": "what the annotations hold: detection_only | segmentation_only | detection_and_segmentation",
    "dataset_train": "COCO annotation JSON of the training split (path)",
    "dataset_train_images": "folder holding the training images (path)",
    "dataset_val": "COCO annotation JSON of the validation split (path)",
    "dataset_val_images": "folder holding the validation images (path)",
    "unlabeled_images": "folder of images without annotations, labelled by the teachers (path)",
}

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_QUOTED_PLACEHOLDER = re.compile(r"""(["'])\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\1""")


def templates_dir() -> Path:
    """Folder of the shipped templates (inside the package, so an installed wheel has them too)."""
    return Path(__file__).resolve().parent.parent / "resources" / "templates"


def template_path(kind: str) -> Path:
    path = templates_dir() / f"{kind}{TEMPLATE_SUFFIX}"
    if not path.is_file():
        known = sorted(p.name.removesuffix(TEMPLATE_SUFFIX) for p in templates_dir().glob(f"*{TEMPLATE_SUFFIX}"))
        raise ConfigError(
            f"no template for kind {kind!r}", where=str(templates_dir()), fix=f"use one of: {', '.join(known)}"
        )
    return path


def is_placeholder(value: Any) -> bool:
    """True for a value that is exactly one unfilled placeholder, e.g. "{{dataset_train}}"."""
    return isinstance(value, str) and PLACEHOLDER.fullmatch(value.strip()) is not None


def fill_placeholders(text: str, values: Mapping[str, Any]) -> str:
    """Replace placeholders named in `values`; a value of None leaves its placeholder unfilled ("not set")."""
    unknown = sorted(set(values) - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(
            f"unknown placeholder name(s): {', '.join(unknown)}",
            where="render_template values",
            fix=f"use only: {', '.join(PLACEHOLDERS)}",
        )

    def as_yaml(match: re.Match[str]) -> str:
        name = match.group(2)
        if values.get(name) is None:
            return match.group(0)
        return json.dumps(_plain(values[name]), ensure_ascii=False)

    def as_text(match: re.Match[str]) -> str:
        name = match.group(1)
        if values.get(name) is None:
            return match.group(0)
        value = _plain(values[name])
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return PLACEHOLDER.sub(as_text, _QUOTED_PLACEHOLDER.sub(as_yaml, text))


def _plain(value: Any) -> Any:
    """Paths and tuples as JSON-able str and list."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value
