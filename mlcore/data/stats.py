"""Dataset statistics a person reads before training: classes, image sizes, crowding, object sizes."""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel

from mlcore.data.validation import ValidatedCoco

# COCO's object size buckets, by area in pixels.
SMALL_MAX_AREA = 32**2
MEDIUM_MAX_AREA = 96**2


class ClassStats(BaseModel):
    category_id: int
    name: str
    annotations: int
    images: int
    crowd: int


class Distribution(BaseModel):
    min: float
    median: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        if values.size == 0:
            return cls(min=0, median=0, mean=0, max=0)
        return cls(min=float(values.min()), median=float(np.median(values)), mean=round(float(values.mean()), 3),
                   max=float(values.max()))


class DatasetStatistics(BaseModel):
    images: int
    annotations: int
    crowd_annotations: int
    negative_images: int
    classes: list[ClassStats]
    image_width: Distribution
    image_height: Distribution
    most_common_sizes: list[tuple[str, int]]
    objects_per_image: Distribution
    object_sizes: dict[str, int]  # COCO buckets: small / medium / large


def compute_statistics(data: ValidatedCoco) -> DatasetStatistics:
    per_class = Counter(ann.category_id for ann in data.annotations if not ann.iscrowd)
    crowd_per_class = Counter(ann.category_id for ann in data.annotations if ann.iscrowd)
    images_per_class = Counter(cat for _, cat in {(a.image_id, a.category_id) for a in data.annotations})
    objects = Counter(ann.image_id for ann in data.annotations if not ann.iscrowd)
    areas = np.fromiter((ann.area for ann in data.annotations if not ann.iscrowd), dtype=np.float64)
    widths = np.fromiter((image.width for image in data.images), dtype=np.float64)
    heights = np.fromiter((image.height for image in data.images), dtype=np.float64)
    sizes = Counter(f"{image.width}x{image.height}" for image in data.images)
    annotated = {ann.image_id for ann in data.annotations}
    return DatasetStatistics(
        images=len(data.images),
        annotations=len(data.annotations),
        crowd_annotations=sum(crowd_per_class.values()),
        negative_images=sum(image.id not in annotated for image in data.images),
        classes=[
            ClassStats(category_id=c.id, name=c.name, annotations=per_class[c.id], images=images_per_class[c.id],
                       crowd=crowd_per_class[c.id])
            for c in sorted(data.categories, key=lambda c: c.id)
        ],
        image_width=Distribution.of(widths),
        image_height=Distribution.of(heights),
        most_common_sizes=sizes.most_common(5),
        objects_per_image=Distribution.of(np.fromiter((objects[i.id] for i in data.images), dtype=np.float64)),
        object_sizes={
            "small": int((areas < SMALL_MAX_AREA).sum()),
            "medium": int(((areas >= SMALL_MAX_AREA) & (areas < MEDIUM_MAX_AREA)).sum()),
            "large": int((areas >= MEDIUM_MAX_AREA).sum()),
        },
    )
