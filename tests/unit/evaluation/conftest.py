"""ultralytics' settings in a temp dir; a small demo split with boxes and masks; noisy predictions of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_demo_dataset
from mlcore.evaluation import mask_to_rle
from mlcore.students import configure_ultralytics

CATEGORY_IDS = {"0": 1, "1": 2, "2": 3}  # the demo's square, circle, triangle
NAMES = ["square", "circle", "triangle"]


@pytest.fixture(scope="session", autouse=True)
def ultralytics_home(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    return configure_ultralytics()


@pytest.fixture(scope="session")
def demo_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CocoDataset]:
    """Five 96x72 images with up to three shapes each (boxes and polygons), the last one empty."""
    annotations = make_demo_dataset(tmp_path_factory.mktemp("demo"), mode="both", num_images=5,
                                    image_size=(96, 72), max_objects=3, negatives=1, seed=5)
    return annotations, CocoDataset(annotations)


def gt_masks(data: dict[str, Any]) -> dict[int, np.ndarray]:
    """Annotation id -> (H, W) uint8 mask decoded from its polygon."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    masks = {}
    for annotation in data["annotations"]:
        height, width = sizes[annotation["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(annotation["segmentation"], height, width))
        masks[annotation["id"]] = mask_utils.decode(rle)
    return masks


def noisy_results(data: dict[str, Any], seed: int = 0, masks: bool = True) -> list[dict[str, Any]]:
    """Imperfect predictions: jittered boxes, shifted masks, random scores, some wrong classes and false alarms."""
    rng = np.random.default_rng(seed)
    decoded = gt_masks(data) if masks else {}
    categories = sorted(category["id"] for category in data["categories"])
    results = []
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        dx, dy = rng.integers(-3, 4, size=2)
        category = annotation["category_id"] if rng.random() > 0.2 else int(rng.choice(categories))
        record = {"image_id": annotation["image_id"], "category_id": category, "score": float(rng.random()),
                  "bbox": [x + float(dx), y + float(dy), w * float(rng.uniform(0.8, 1.2)), h]}
        if masks:
            record["segmentation"] = mask_to_rle(np.roll(decoded[annotation["id"]], (int(dy), int(dx)), (0, 1)))
        results.append(record)
        if rng.random() < 0.4:  # a false alarm next to it
            false = {**record, "score": float(rng.random()), "bbox": [x + w / 2, y + h / 2, w, h]}
            if masks:
                shifted = np.roll(decoded[annotation["id"]], (int(h // 2), int(w // 2)), (0, 1))
                false["segmentation"] = mask_to_rle(shifted)
            results.append(false)
    return results


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def self_labelled(annotation_file: Path, results: list[dict[str, Any]], target: Path, per_image: int = 3) -> Path:
    """ANNOTATION_FILE's images labelled with every other one of an engine's own top predictions (non-empty masks).

    The engine scores strictly between 0 and 1 against it (the skipped predictions outrank some labelled ones), so
    the same number from two paths means the same predictions, not two zeros.
    """
    by_image: dict[int, list[dict[str, Any]]] = {}
    for record in sorted(results, key=lambda record: -record["score"]):
        rle = {**record["segmentation"], "counts": record["segmentation"]["counts"].encode()}
        if mask_utils.area(rle) > 0:
            by_image.setdefault(record["image_id"], []).append(record)
    annotations = []
    for image_id, records in sorted(by_image.items()):
        for record in records[0:2 * per_image:2]:
            rle = {**record["segmentation"], "counts": record["segmentation"]["counts"].encode()}
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": record["category_id"], "bbox": record["bbox"],
                                "area": float(mask_utils.area(rle)), "iscrowd": 0,
                                "segmentation": record["segmentation"]})
    target.write_text(json.dumps({**read_json(annotation_file), "annotations": annotations}))
    return target
