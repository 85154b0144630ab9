"""A COCO file and its images moved apart, with nothing left that says where the images went: the case `--images` is
for (a split file copied to another machine or folder, written by another tool, or from before files recorded
their images root)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Relocated:
    annotations: Path  # ROOT/split/<name>: no images beside it, no .mode_config.json, no recorded images root
    images: Path  # ROOT/pics: the images it lists, by file_name

    def tried_folders(self) -> list[Path]:
        """Folders the search looks in that must appear in its error (the JSON's folder, images/ beside it)."""
        return [self.annotations.parent, self.annotations.parent / "images"]


def relocate(annotation_file: Path, images_root: Path, root: Path) -> Relocated:
    """Copy ANNOTATION_FILE to ROOT/split/ (without its `mlcore` entry) and the images it lists from IMAGES_ROOT to
    ROOT/pics/."""
    data = json.loads(annotation_file.read_text())
    data.pop("mlcore", None)
    target = root / "split" / annotation_file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))
    pictures = root / "pics"
    for image in data["images"]:
        destination = pictures / image["file_name"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(images_root / image["file_name"], destination)
    return Relocated(target, pictures)


def relocate_splits(data: Path, root: Path) -> tuple[Relocated, Relocated]:
    """train.json and val.json of the prepared folder DATA (images in ROOT/demo/images), moved away from their images
    into ROOT/moved/split and ROOT/moved/pics."""
    original = root / "demo" / "images"
    return tuple(relocate(data / f"{name}.json", original, root / "moved") for name in ("train", "val"))
