"""Turn a pydantic ValidationError into one ConfigError a person can act on.

Each problem becomes a line `<file>: <dotted.key.path>: <message>`, where <file> is the file in the `base:` chain that
set the value. Unknown keys list the valid keys at their level, since a typo is the usual cause.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mlcore.config.paths import dotted
from mlcore.errors import ConfigError

Loc = tuple[str | int, ...]
_NO_GOT = {"value_error", "assertion_error", "missing", "extra_forbidden"}


def validation_error(
    exc: ValidationError, schema: type[BaseModel], file_of: Callable[[Loc], str], where: str, fix: str
) -> ConfigError:
    lines: dict[tuple[str, str], list[str]] = {}
    got: dict[tuple[str, str], str] = {}
    for error in exc.errors():
        loc, model = _walk(schema, tuple(error["loc"]))
        key = (file_of(loc), dotted(loc))
        messages = lines.setdefault(key, [])
        message = _message(error, loc, model)
        if message not in messages:
            messages.append(message)  # several union members fail on one key: one line, "a or b"
        value = error.get("input")
        if isinstance(value, (str, int, float, bool)) and error["type"] not in _NO_GOT:
            got[key] = f" (got {value!r})"
    body = [f"{file}: {path}: {' or '.join(texts)}{got.get((file, path), '')}" for (file, path), texts in lines.items()]
    count = f"{len(body)} problem{'s' if len(body) != 1 else ''}"
    return ConfigError(f"invalid config ({count}):\n  " + "\n  ".join(body), where=where, fix=fix)


def _message(error: Any, loc: Loc, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        valid = list(model.model_fields) if model else []
        text = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            text += f" (did you mean {close[0]!r}?)"
        return text + (f"; valid keys here: {', '.join(valid)}" if valid else "")
    if kind == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if arg is not type(None)]
    return [] if annotation is None else [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _walk(schema: type[BaseModel], loc: Loc) -> tuple[Loc, type[BaseModel] | None]:
    """Follow `loc` through the schema's types: drop pydantic's union-member tags, find the model at the last key."""
    current: Any = schema
    clean: list[str | int] = []
    owner: type[BaseModel] | None = None
    for part in loc:
        members = _members(current)
        model = next((m for m in members if _is_model(m)), None)
        mapping = next((m for m in members if get_origin(m) is dict), None)
        sequence = next((m for m in members if get_origin(m) in (list, tuple)), None)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            owner, current = model, model.model_fields[part].annotation
        elif mapping is not None and isinstance(part, str):
            owner, current = None, get_args(mapping)[1]
        elif sequence is not None and isinstance(part, int):
            args = get_args(sequence)
            owner, current = None, (args[0] if get_origin(sequence) is list or args[-1] is ... else None)
        elif len(members) > 1 and isinstance(part, str):
            current = None  # pydantic's tag for one member of a union, e.g. 'list[str]': not a key
            continue
        else:
            owner, current = model, None
        clean.append(part)
    return tuple(clean), owner
