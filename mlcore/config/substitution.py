"""Transforms applied to parsed YAML before validation: `${ENV}` substitution and unfilled-placeholder removal.

Both run on parsed values, never on the text, so an environment variable cannot inject YAML structure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from mlcore.config.paths import dotted
from mlcore.config.templates import PLACEHOLDER, is_placeholder
from mlcore.errors import ConfigError

# `$${` is an escaped, literal `${`; a `${` that is neither an escape nor a valid reference is an error.
_REFERENCE = re.compile(
    r"(?P<escaped>\$\$\{)|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bad>\$\{)"
)
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _map_strings(node: Any, path: tuple[str | int, ...], fn: Callable[[str, tuple[str | int, ...]], Any]) -> Any:
    if isinstance(node, dict):
        return {key: _map_strings(value, (*path, key), fn) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_strings(value, (*path, index), fn) for index, value in enumerate(node)]
    if isinstance(node, str):
        return fn(node, path)
    return node


def substitute_env(data: Any, where: str, environ: Mapping[str, str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in string values; a value that is one reference gets int/float/bool type."""
    env = os.environ if environ is None else environ

    def replace(text: str, path: tuple[str | int, ...]) -> Any:
        if "$" not in text:
            return text

        def one(match: re.Match[str]) -> str:
            if match.group("escaped"):
                return "${"
            if match.group("bad"):
                raise ConfigError(
                    f"{dotted(path)}: malformed variable reference in {text!r}",
                    where=where,
                    fix="write ${NAME} or ${NAME:-default} (letters, digits, _), or $${ for a literal ${",
                )
            name, default = match.group("name"), match.group("default")
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{dotted(path)}: environment variable {name} is not set",
                where=where,
                fix=f"export {name}=..., or give a default: ${{{name}:-value}}",
            )

        result = _REFERENCE.sub(one, text)
        whole = _REFERENCE.fullmatch(text)
        return _typed_scalar(result) if whole and whole.group("name") else result

    return _map_strings(data, (), replace)


def _typed_scalar(text: str) -> Any:
    """"10" -> 10, "0.5" -> 0.5, "true" -> True (as YAML would read them); anything else stays text."""
    if _EXPONENT_FLOAT.fullmatch(text.strip()):
        return float(text)  # YAML 1.1 reads 1e-4 as a string; a number is meant.
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def drop_unfilled_placeholders(data: Any, where: str, path: tuple[str | int, ...] = ()) -> Any:
    """Remove keys whose value is still exactly "{{name}}" (not set: the schema default applies).

    A placeholder anywhere else (inside a longer string, as a list item) cannot mean "not set": it is an error.
    """
    if isinstance(data, dict):
        return {
            key: drop_unfilled_placeholders(value, where, (*path, key))
            for key, value in data.items()
            if not is_placeholder(value)
        }
    if isinstance(data, list):
        return [drop_unfilled_placeholders(value, where, (*path, index)) for index, value in enumerate(data)]
    if isinstance(data, str) and (match := PLACEHOLDER.search(data)):
        raise ConfigError(
            f"{dotted(path)}: unfilled placeholder {match.group(0)} in {data!r}",
            where=where,
            fix="replace it with a value; placeholders may only stand alone as a whole value",
        )
    return data
