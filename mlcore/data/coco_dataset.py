"""Read access to a prepared COCO file for the training stages: one sample per image, masks decoded on demand.

Meant for files `validate` wrote (cleaned copy or a split), so it trusts them: no rule checking here. Memory stays
low for large files: each annotation keeps its raw segmentation bytes until a sample's masks are asked for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from mlcore.data.coco_reader import MLCORE_KEY, RawCoco, read_coco
from mlcore.data.coco_schema import CocoAnnotation, CocoCategory, CocoImage
from mlcore.data.images import choose_image_root
from mlcore.data.masks import decode_to_mask
from mlcore.data.mode_config import MODE_CONFIG_NAME

_segmentation_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class Sample:
    image_id: int
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32, x, y, width, height in pixels
    category_ids: np.ndarray  # (n,) int64, COCO category ids
    iscrowd: np.ndarray  # (n,) bool
    _segmentations: tuple[msgspec.Raw, ...]

    def masks(self) -> np.ndarray:
        """(n, height, width) uint8 masks; an annotation without a mask gives an empty one."""
        out = np.zeros((len(self._segmentations), self.height, self.width), dtype=np.uint8)
        for index, raw in enumerate(self._segmentations):
            if raw:
                out[index] = decode_to_mask(_segmentation_decoder.decode(raw), self.height, self.width)
        return out

    @property
    def has_masks(self) -> np.ndarray:
        return np.array([bool(raw) and bytes(raw) not in (b"[]", b"null") for raw in self._segmentations])


class CocoDataset:
    """Images in file order; `dataset[i]` is a Sample with that image's annotations."""

    def __init__(self, annotation_file: str | Path, images_dir: str | Path | None = None) -> None:
        raw = read_coco(annotation_file)
        self.sha256 = raw.sha256
        self.images = [msgspec.json.decode(r, type=CocoImage) for r in raw.images]
        self.categories = [msgspec.json.decode(r, type=CocoCategory) for r in raw.categories]
        self.images_root = images_root_of(raw, [image.file_name for image in self.images], images_dir)
        self._annotations: dict[int, list[CocoAnnotation]] = defaultdict(list)
        decoder = msgspec.json.Decoder(CocoAnnotation)
        for record in raw.annotations:
            annotation = decoder.decode(record)
            self._annotations[annotation.image_id].append(annotation)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        image = self.images[index]
        annotations = self._annotations.get(image.id, [])
        return Sample(
            image_id=image.id, image_path=self.images_root / image.file_name,
            width=int(image.width or 0), height=int(image.height or 0),
            boxes=np.array([a.bbox or [0, 0, 0, 0] for a in annotations], dtype=np.float32).reshape(-1, 4),
            category_ids=np.array([a.category_id for a in annotations], dtype=np.int64),
            iscrowd=np.array([bool(a.iscrowd) for a in annotations], dtype=bool),
            _segmentations=tuple(a.segmentation for a in annotations),
        )


def images_root_of(raw: RawCoco, file_names: list[str], images_dir: str | Path | None = None) -> Path:
    """Where a COCO file's images are: --images (same rule as `validate`), else the root `validate` recorded in the
    file itself (split and cleaned files carry it) or in .mode_config.json beside it, else found as `validate` does."""
    annotation_file = Path(raw.path)
    if images_dir is None:
        for recorded in (recorded_images_root(raw), _mode_config_root(annotation_file)):
            if recorded is not None and recorded.is_dir():
                return recorded
    return choose_image_root(annotation_file, file_names, Path(images_dir) if images_dir is not None else None)


def recorded_images_root(raw: RawCoco) -> Path | None:
    """The images root `validate` wrote into a file's top-level `mlcore` entry, if any."""
    entry = raw.extra.get(MLCORE_KEY)
    if entry is None:
        return None
    try:
        root = msgspec.json.decode(entry).get("images_root")
    except (msgspec.DecodeError, AttributeError):
        return None
    return Path(root) if isinstance(root, str) and root else None


def _mode_config_root(annotation_file: Path) -> Path | None:
    beside = annotation_file.parent / MODE_CONFIG_NAME
    if beside.is_file():
        recorded = json.loads(beside.read_text()).get("images_root")
        return Path(recorded) if recorded else None
    return None
