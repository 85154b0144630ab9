"""A small document model rendered two ways: markdown (Prefect artifacts, report.md) and standalone HTML.

One structure, two renderers, so report.md and report.html always say the same thing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Image:
    """A picture beside the report; `path` is relative to the report's folder."""

    path: str
    alt: str


Block = Union[Paragraph, Bullets, Table, Image]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


def cell(value: Any) -> str:
    """A table cell as text: floats with 4 significant decimals, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}"
    return str(value)


def rounded(value: Any, digits: int = 4) -> Any:
    """A float to DIGITS significant digits (still a number: 1056.0479 -> 1056.0); anything else as it is."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    return value


def table_records(table: Table) -> list[dict[str, Any]]:
    """TABLE's rows as records keyed by its headers, numbers rounded: what a Prefect table artifact shows."""
    return [{header: rounded(value) for header, value in zip(table.headers, row)} for row in table.rows]


def to_markdown(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _markdown_block(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        return [_markdown_row(block.headers), "|" + "---|" * len(block.headers)] + \
            [_markdown_row([cell(value) for value in row]) for row in block.rows]
    return [f"![{block.alt}]({block.path})"]


def _markdown_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(value.replace("|", "\\|").replace("\n", " ") for value in values) + " |"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2rem}img{max-width:100%}"""


def to_html(document: Document) -> str:
    body = [f"<h1>{_inline(document.title)}</h1>"]
    for section in document.sections:
        body.append(f"<h2>{_inline(section.title)}</h2>")
        body += [_html_block(block) for block in section.blocks]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(document.title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(name)}</th>" for name in block.headers)
        rows = "".join("<tr>" + "".join(f"<td>{_inline(cell(value))}</td>" for value in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<p><img src="{html.escape(block.path, quote=True)}" alt="{html.escape(block.alt, quote=True)}"></p>'


def _inline(text: str) -> str:
    """Escaped text with markdown's `code` and **bold** spans, the only inline markup the reports use."""
    out: list[str] = []
    bold = False
    for index, part in enumerate(text.split("`")):
        if index % 2 == 1:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        pieces = part.split("**")
        for number, piece in enumerate(pieces):
            if number:
                bold = not bold
                out.append("<strong>" if bold else "</strong>")
            out.append(html.escape(piece))
    if bold:
        out.append("</strong>")
    return "".join(out)
