"""Key paths inside a config, written the way a user finds them in the YAML: `lora.r`, `losses.layers[0]`."""

from __future__ import annotations

from collections.abc import Sequence


def dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
