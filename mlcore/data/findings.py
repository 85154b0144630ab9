"""What validation found: each finding says how bad, where (a JSON path or a file) and how to fix it."""

from __future__ import annotations

from collections import Counter
from enum import Enum

from pydantic import BaseModel, Field


class Severity(str, Enum):
    """`error` makes the dataset unusable as it is; `warning` was fixed or worked around; `info` is for the record."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Finding(BaseModel):
    severity: Severity
    code: str = Field(description="Stable machine-readable name of the rule, e.g. 'bbox_outside_image'.")
    path: str = Field(description="Where: a JSON path such as 'annotations[812].segmentation', or a file path.")
    message: str
    fix: str = ""
    count: int = Field(1, description="How many records share this finding (one root cause, one finding).")
    places: list[str] = Field(default_factory=list, description="Every path, when the finding covers several.")


class Findings:
    """An append-only list of findings with cheap counting by severity and code."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._by_severity: Counter[Severity] = Counter()

    def add(self, severity: Severity, code: str, path: str, message: str, fix: str = "", *,
            places: list[str] | None = None) -> None:
        places = places or []
        self.items.append(Finding(severity=severity, code=code, path=path, message=message, fix=fix,
                                  count=max(1, len(places)), places=places))
        self._by_severity[severity] += 1

    def collapse_repeats(self) -> None:
        """Every rule that fired on several records becomes one finding: the count, the first few places with their
        messages, and every path in `places`. A person reads one line per cause; a program still gets each path."""
        by_code: dict[str, list[Finding]] = {}
        for item in self.items:
            by_code.setdefault(item.code, []).append(item)
        collapsed: list[Finding] = []
        for item in self.items:
            group = by_code[item.code]
            if len(group) == 1:
                collapsed.append(item)
            elif item is group[0]:
                shown = "; ".join(f"{f.path}: {f.message}" for f in group[:EXAMPLES_SHOWN])
                more = f"; and {len(group) - EXAMPLES_SHOWN} more" if len(group) > EXAMPLES_SHOWN else ""
                places = [place for f in group for place in (f.places or [f.path])]
                collapsed.append(Finding(severity=item.severity, code=item.code, path=item.path.split("[")[0],
                                         message=f"{len(places)} times: {shown}{more}", fix=item.fix,
                                         count=len(places), places=places))
        self.items = collapsed
        self._by_severity = Counter(item.severity for item in self.items)

    def error(self, code: str, path: str, message: str, fix: str = "") -> None:
        self.add(Severity.ERROR, code, path, message, fix)

    def warning(self, code: str, path: str, message: str, fix: str = "") -> None:
        self.add(Severity.WARNING, code, path, message, fix)

    def info(self, code: str, path: str, message: str, fix: str = "") -> None:
        self.add(Severity.INFO, code, path, message, fix)

    def count(self, severity: Severity) -> int:
        return self._by_severity[severity]

    @property
    def has_errors(self) -> bool:
        return self._by_severity[Severity.ERROR] > 0

    def codes(self) -> Counter[str]:
        return Counter(item.code for item in self.items)

    def __len__(self) -> int:
        return len(self.items)


EXAMPLES_SHOWN = 5


class FindingGroup:
    """Many records with one root cause become one finding: the count and the first few places, never hundreds.

    With a single place the finding is exactly the per-record one (its path and its detail).
    """

    def __init__(self, severity: Severity, code: str, summary: str, fix: str, path: str) -> None:
        self.severity, self.code, self.summary, self.fix, self.path = severity, code, summary, fix, path
        self.places: list[tuple[str, str]] = []
        self._short: list[str] = []

    def add(self, path: str, detail: str, short: str | None = None) -> None:
        """`detail` stands alone when this is the only place; `short` (default: detail) is used in a list."""
        self.places.append((path, detail))
        self._short.append(detail if short is None else short)

    def __len__(self) -> int:
        return len(self.places)

    def emit(self, findings: Findings) -> None:
        if not self.places:
            return
        if len(self.places) == 1:
            path, detail = self.places[0]
            findings.add(self.severity, self.code, path, detail, self.fix)
            return
        shown = "; ".join(f"{path}: {short}" if short else path
                          for (path, _), short in zip(self.places[:EXAMPLES_SHOWN], self._short))
        more = f"; and {len(self.places) - EXAMPLES_SHOWN} more" if len(self.places) > EXAMPLES_SHOWN else ""
        findings.add(self.severity, self.code, self.path,
                     f"{self.summary} ({len(self.places)} places): {shown}{more}", self.fix,
                     places=[path for path, _ in self.places])
