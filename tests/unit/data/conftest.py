from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image


class CocoBuilder:
    """Builds small COCO files (and real image files) in a temp dir, one rule at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "images").mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"images": [], "annotations": [], "categories": []}

    def category(self, id: int, name: str) -> dict:
        self.data["categories"].append({"id": id, "name": name})
        return self.data["categories"][-1]

    def image(self, id: int, width: int = 100, height: int = 80, file_name: str | None = None,
              write: bool = True, file_size: tuple[int, int] | None = None) -> dict:
        file_name = file_name or f"img_{id}.png"
        if write:
            path = self.root / "images" / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", file_size or (width, height), (120, 120, 120)).save(path)
        self.data["images"].append({"id": id, "file_name": file_name, "width": width, "height": height})
        return self.data["images"][-1]

    def annotation(self, image_id: int, category_id: int, bbox: Any = None, segmentation: Any = None,
                   **extra: Any) -> dict:
        ann: dict[str, Any] = {"id": len(self.data["annotations"]) + 1, "image_id": image_id,
                               "category_id": category_id}
        if bbox is not None:
            ann["bbox"] = bbox
        if segmentation is not None:
            ann["segmentation"] = segmentation
        ann.update(extra)
        self.data["annotations"].append(ann)
        return ann

    def write(self, name: str = "annotations.json", text: str | None = None) -> Path:
        path = self.root / name
        path.write_text(text if text is not None else json.dumps(self.data))
        return path


@pytest.fixture
def coco(tmp_path: Path) -> CocoBuilder:
    return CocoBuilder(tmp_path / "dataset")


def square(x: float, y: float, size: float) -> list[list[float]]:
    return [[x, y, x + size, y, x + size, y + size, x, y + size]]
