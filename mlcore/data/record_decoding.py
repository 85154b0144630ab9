"""Decoding COCO records: strict and fast for clean files, lenient where it is safe, and one finding per root cause.

Ids written as whole-number floats (`3.0`) or numeric strings (`"3"`) become integers, with one grouped warning. A
record with fields that cannot be used is skipped, and every wrong field of it is reported, not only the first; a
field that is wrong the same way in many records (VIA's COCO export writes no `category_id` at all) is one finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from mlcore.data.coco_schema import CocoAnnotation, CocoCategory, CocoImage, record_field_decoder, replace_fields
from mlcore.data.findings import FindingGroup, Findings, Severity

# Fields where 3.0 or "3" safely means 3 (ids, and the 0/1 of iscrowd).
WHOLE_NUMBER_FIELDS: dict[type, tuple[str, ...]] = {
    CocoImage: ("id",), CocoCategory: ("id",), CocoAnnotation: ("id", "image_id", "category_id", "iscrowd"),
}
_value_decoder = msgspec.json.Decoder()


class RecordDecoder:
    """Yields (index, typed record, raw bytes) for each usable record of one list; call `finish()` after."""

    def __init__(self, kind: type, prefix: str, findings: Findings) -> None:
        self.kind, self.prefix, self.findings = kind, prefix, findings
        self._fast = msgspec.json.Decoder(kind)
        self._fields = [info for info in msgspec.structs.fields(kind) if info.type is not msgspec.Raw]
        self._problems: dict[tuple[str, str], FindingGroup] = {}
        required = ", ".join(f"'{info.name}'" for info in self._fields if info.required)
        self._fix = (f"each entry of '{prefix}' needs {required} of the right types (see docs/ANNOTATION_FORMATS.md)")
        self._converted = FindingGroup(
            Severity.WARNING, "id_converted", f"ids (and iscrowd) in '{prefix}' written as whole-number floats or "
            "numeric strings were converted to integers",
            "nothing to do: the cleaned copy has integer ids (the exporter should write integers)", prefix)

    def records(self, raws: list[msgspec.Raw]) -> Iterator[tuple[int, Any, msgspec.Raw | bytes]]:
        for index, raw in enumerate(raws):
            try:
                yield index, self._fast.decode(raw), raw
            except (msgspec.ValidationError, msgspec.DecodeError):
                decoded = self._lenient(index, raw)
                if decoded is not None:
                    yield decoded

    def finish(self) -> None:
        self._converted.emit(self.findings)
        for group in self._problems.values():
            group.emit(self.findings)

    def _lenient(self, index: int, raw: msgspec.Raw) -> tuple[int, Any, bytes] | None:
        where = f"{self.prefix}[{index}]"
        try:
            fields = record_field_decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self._problem(where, "", "is not a JSON object", f"got {_short(_value_decoder.decode(raw))}")
            return None
        converted: dict[str, int] = {}
        problems = 0
        for info in self._fields:
            if info.name not in fields:
                if info.required:
                    self._problem(f"{where}.{info.name}", info.name, "is missing", f"'{info.name}' is missing", "")
                    problems += 1
                continue
            value = _value_decoder.decode(fields[info.name])
            try:
                msgspec.convert(value, info.type)
            except msgspec.ValidationError as exc:
                if info.name in WHOLE_NUMBER_FIELDS[self.kind]:
                    whole = whole_number(value)
                    if whole is not None:
                        converted[info.name] = whole
                    else:
                        self._problem(f"{where}.{info.name}", info.name, "is not a whole number",
                                      f"'{info.name}' is {_short(value)}, not a whole number")
                        problems += 1
                    continue
                message = str(exc).partition(" - at ")[0]
                self._problem(f"{where}.{info.name}", info.name, f"has the wrong type ({message})",
                              f"'{info.name}': {message}, got {_short(value)}")
                problems += 1
        if problems:
            return None
        fixed = replace_fields(raw, **converted) if converted else bytes(raw)
        try:
            typed = msgspec.json.decode(fixed, type=self.kind)
        except msgspec.ValidationError as exc:  # a rule the per-field check does not know; reported as it comes
            self._problem(where, "", "does not match the schema", str(exc))
            return None
        if converted:
            self._converted.add(where, ", ".join(f"'{name}' {_short(_value_decoder.decode(fields[name]))} -> "
                                                 f"{value}" for name, value in converted.items()))
        return index, typed, fixed

    def _problem(self, path: str, field: str, problem: str, detail: str, short: str | None = None) -> None:
        key = (field, problem)
        if key not in self._problems:
            subject = f"'{field}' {problem}" if field else f"the record {problem}"
            self._problems[key] = FindingGroup(Severity.ERROR, "schema", f"{subject} in '{self.prefix}'; those "
                                               "records are skipped", self._fix, f"{self.prefix}[*].{field}"
                                               if field else self.prefix)
        self._problems[key].add(path, detail, short)


def whole_number(value: Any) -> int | None:
    """3, 3.0 and "3" are the id 3; True, 3.5, "3a" and None are not ids."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
