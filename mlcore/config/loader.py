"""Read, inherit, substitute and validate config files; write them back; fill templates.

A config file goes through, in order:
1. `yaml.safe_load` (no Python tags; syntax errors name file and line);
2. `${VAR}` / `${VAR:-default}` substitution in string values (`$${` is a literal `${`); a value that is one
   reference and reads as int/float/bool becomes that type, so `epochs: ${EPOCHS:-10}` is an int;
3. placeholders: a value that is still exactly `"{{name}}"` (an unfilled template placeholder) means "not set" and
   is removed, so the schema default applies (None for the dataset fields, which are all optional). This is why a
   shipped template validates as it is. A placeholder inside a longer string or a list is an error;
4. `base: other.yaml` (relative to the file; may chain; cycles are errors): the base is loaded the same way, then
   the child is deep-merged over it (dicts merge, lists and scalars are replaced) and `base` is dropped;
5. validation against the schema picked from `kind:` in `CONFIG_SCHEMAS` (or the one passed in); every field error
   is reported at once as `<file>: <dotted.key.path>: <message>`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlcore.config.error_report import Loc, validation_error
from mlcore.config.schemas import CONFIG_SCHEMAS
from mlcore.config.substitution import drop_unfilled_placeholders, substitute_env
from mlcore.config.templates import PLACEHOLDER, fill_placeholders, template_path, templates_dir
from mlcore.errors import ConfigError
from mlcore.io import atomic_open

__all__ = ["load_config", "load_config_data", "dump_config", "render_template", "templates_dir", "schema_for"]

Model = TypeVar("Model", bound=BaseModel)
Origins = dict[Loc, str]


def load_config(path: str | os.PathLike[str], schema: type[Model] | None = None) -> Model:
    """Load a config file into its validated pydantic model (schema from `kind:` unless given)."""
    shown = os.fspath(path)
    data, origins = _load_tree(Path(path), shown, ())
    chosen = schema or schema_for(data, shown)
    return _validate(data, chosen, shown, origins)


def load_config_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The merged, substituted mapping before validation (for tools that inspect or diff configs)."""
    return _load_tree(Path(path), os.fspath(path), ())[0]


def schema_for(data: Mapping[str, Any], where: str) -> type[BaseModel]:
    kind = data.get("kind")
    valid = ", ".join(CONFIG_SCHEMAS)
    if kind is None:
        raise ConfigError("the config has no `kind:` key", where=where, fix=f"add `kind: <one of: {valid}>`")
    if kind not in CONFIG_SCHEMAS:
        raise ConfigError(f"unknown kind {kind!r}; valid kinds: {valid}", where=where, fix="set `kind:` to one of them")
    return CONFIG_SCHEMAS[kind]


def dump_config(model: BaseModel, path: str | os.PathLike[str]) -> None:
    """Write a config as YAML atomically (a crash never leaves half a file); `load_config` reads it back equal."""
    data = model.model_dump(mode="json")
    if "kind" in data:
        data = {"kind": data.pop("kind"), **data}
    with atomic_open(path, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, allow_unicode=True, default_flow_style=False)


def render_template(kind: str, values: Mapping[str, Any], *, strict: bool = False) -> str:
    """The template of `kind` with placeholders filled and comments kept; checked to load as a valid config.

    Values of None leave their placeholder unfilled ("not set"); `strict=True` makes any unfilled one an error.
    """
    path = template_path(kind)
    text = fill_placeholders(path.read_text(encoding="utf-8"), values)
    shown = f"{path.name} (rendered)"
    remaining = sorted({match.group(0) for match in PLACEHOLDER.finditer(text)})
    if strict and remaining:
        raise ConfigError(f"unfilled placeholders: {', '.join(remaining)}", where=shown, fix="pass values for them")
    data = _prepare(_parse_yaml(text, shown), shown)
    _validate(data, CONFIG_SCHEMAS[kind], shown, {})
    return text


def _parse_yaml(text: str, shown: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot be parsed"
        fix = "fix the YAML there (indentation, quotes, ':' spacing)"
        if isinstance(exc, yaml.constructor.ConstructorError):
            problem += " (configs are loaded with yaml.safe_load: Python tags such as !!python/object are refused)"
            fix = "remove the tag and write a plain value"
        raise ConfigError(f"YAML error{at}: {problem}", where=shown, fix=fix) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", where=shown, fix="fix the YAML syntax") from None
    if data is None:
        raise ConfigError("the config file is empty", where=shown, fix="start from a template in configs/templates")
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys, not a {type(data).__name__}",
            where=shown,
            fix="write `key: value` lines, starting with `kind: ...`",
        )
    return data


def _prepare(data: dict[str, Any], shown: str) -> dict[str, Any]:
    return drop_unfilled_placeholders(substitute_env(data, shown), shown)


def _read(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=shown, fix="check the path (relative to the cwd)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file: {exc}", where=shown, fix="pass a UTF-8 YAML file") from None
    return _prepare(_parse_yaml(text, shown), shown)


def _load_tree(path: Path, shown: str, chain: tuple[Path, ...]) -> tuple[dict[str, Any], Origins]:
    """Load one file and, recursively, its `base:`; return merged data and which file set each key."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"`base:` files form a cycle: {cycle}", where=shown, fix="remove one of the base: links")
    data = _read(path, shown)
    origins = _origins(data, shown)
    base = data.pop("base", None)
    origins.pop(("base",), None)
    if base is None:
        return data, origins
    if not isinstance(base, str) or not base.strip():
        raise ConfigError("`base:` must be a path to another YAML file", where=shown, fix="base: ../common.yaml")
    base_path = path.parent / base
    base_shown = os.path.normpath(os.path.join(os.path.dirname(shown), base))
    if not base_path.is_file():
        raise ConfigError(
            f"base file {base!r} not found (looked for {base_shown})",
            where=shown,
            fix="`base:` paths are relative to the file that names them",
        )
    base_data, base_origins = _load_tree(base_path, base_shown, (*chain, resolved))
    return _deep_merge(base_data, data), _merge_origins(base_origins, origins, data)


def _deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _origins(data: Any, shown: str, prefix: Loc = ()) -> Origins:
    found: Origins = {}
    if isinstance(data, dict):
        for key, value in data.items():
            found[(*prefix, key)] = shown
            found.update(_origins(value, shown, (*prefix, key)))
    return found


def _merge_origins(base: Origins, child: Origins, child_data: dict[str, Any]) -> Origins:
    """The child's keys win; base keys under a child value that replaced a whole mapping are gone."""

    def replaced(loc: Loc) -> bool:
        node: Any = child_data
        for part in loc[:-1]:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
            if not isinstance(node, dict):
                return True
        return False

    return {**{loc: file for loc, file in base.items() if not replaced(loc)}, **child}


def _validate(data: dict[str, Any], schema: type[Model], shown: str, origins: Origins) -> Model:
    def file_of(loc: Loc) -> str:
        for end in range(len(loc), 0, -1):
            if loc[:end] in origins:
                return origins[loc[:end]]
        return shown

    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        kind = data.get("kind", "")
        template = templates_dir() / f"{kind}.template.yaml"
        fix = "correct the keys listed" + (f"; each key is explained in {template}" if template.is_file() else "")
        raise validation_error(exc, schema, file_of, shown, fix) from None
