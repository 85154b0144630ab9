"""Pictures carried inside a report's markdown, for where the report is read away from its folder.

report.md links its pictures relatively (`benchmark/report.png`), which works beside the run folder. A viewer that
has only the markdown (the Prefect UI showing the report artifact) resolves such a link against its own address and
shows a broken image; with each picture as a `data:` URI the markdown is self-contained. Pictures are downscaled to
MAX_WIDTH pixels, enough for a page, and reduced to a 256-colour palette (charts are flat colours), so a chart costs
tens of kilobytes.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

MAX_WIDTH = 900
# A picture line as `to_markdown` writes an `Image` block.
_PICTURE = re.compile(r"^!\[(?P<alt>[^\]\n]*)\]\((?P<path>[^)\s]+)\)$", re.MULTILINE)


def png_data_uri(path: str | os.PathLike[str], max_width: int = MAX_WIDTH) -> str:
    """The picture at PATH as a `data:image/png;base64,...` URI, at most MAX_WIDTH pixels wide."""
    with PILImage.open(path) as picture:
        picture.load()
        if picture.width > max_width:
            height = max(1, round(picture.height * max_width / picture.width))
            picture = picture.resize((max_width, height), PILImage.Resampling.LANCZOS)
        if picture.mode not in ("P", "L"):
            picture = picture.convert("RGB").quantize(256)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def inline_pictures(markdown: str, root: str | os.PathLike[str], max_width: int = MAX_WIDTH) -> str:
    """MARKDOWN with each picture whose link is a file under ROOT (relative links are relative to ROOT) embedded as
    a data: URI. A picture that is missing or not an image keeps its link: the text still says what it was."""

    def embedded(match: re.Match[str]) -> str:
        link = match["path"]
        if "://" in link or link.startswith("data:"):
            return match[0]
        try:
            uri = png_data_uri(Path(root) / link, max_width)
        # ImportError: once ultralytics is loaded, Image.open retries an unknown file as HEIF, needing pi_heif
        except (OSError, UnidentifiedImageError, ValueError, ImportError):
            return match[0]
        return f"![{match['alt']}]({uri})"

    return _PICTURE.sub(embedded, markdown)


__all__ = ["MAX_WIDTH", "inline_pictures", "png_data_uri"]
