"""training-pipeline's parameter types, chosen for the Prefect UI's Custom run form.

Each parameter has one JSON type, so the form shows a plain input (an `X | None` parameter shows a type toggle and
`Property is type "None"` until the user picks a type), and its rule is a JSON-schema keyword, so the server's message
names it (`imgsz` 100: "100 is not a multiple of 32"). What used to be None, "the config's value", is the type's
empty value: "" for text, 0 for counts. None is still accepted from Python callers (`mlcore pipeline`, tests) and
means the same; `given` turns the empty values back into None for the stages, so their cache keys do not change.

The BeforeValidator comes after Field: in the other order pydantic's JSON schema loses the constraints' names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field

T = TypeVar("T")


def _none_as(empty: Any) -> BeforeValidator:
    return BeforeValidator(lambda value: empty if value is None else value)


# "" (or None): the config's value, the demo dataset, the worker's environment: whatever the help line says.
Text = Annotated[str, _none_as("")]
# 0 (or None): the config's value.
Count = Annotated[int, Field(ge=0), _none_as(0)]
ImageSize = Annotated[int, Field(ge=0, multiple_of=32), _none_as(0)]

# The annotation modes, and `mlcore demo-data --mode`'s words for them, which the form and the CLI accept too.
Mode = Literal["auto", "detection_only", "segmentation_only", "detection_and_segmentation", "boxes", "masks", "both"]
MODE_WORDS = {"boxes": "detection_only", "masks": "segmentation_only", "both": "detection_and_segmentation"}


def given(value: T) -> T | None:
    """VALUE, or None where it is the empty value that means "the config's value" ("" or 0)."""
    return None if value in ("", 0) and not isinstance(value, bool) else value


def annotation_mode(mode: str) -> str | None:
    """The annotation mode MODE names (demo-data's words translated); None for auto (detected from the data)."""
    mode = MODE_WORDS.get(mode, mode)
    return None if mode == "auto" else mode


__all__ = ["MODE_WORDS", "Count", "ImageSize", "Mode", "Text", "annotation_mode", "given"]
