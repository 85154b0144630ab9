"""Inference over an image, a folder or a COCO file's images: an overlay per input and one COCO results file.

Writes, under output_dir (each file atomically):
- `overlays/<file name>`: the image with masks tinted, boxes and "class score" labels drawn (same format as the input);
- `predictions.json`: COCO detection results, a list of {"image_id", "file_name", "category_id", "bbox" [x, y, w, h],
  "score"} plus "segmentation" (RLE) for segmentation models; pycocotools' `loadRes` reads it as it is;
- `inference.json`: the `InferenceSummary` (images with their ids and sizes, categories, counts, settings).

Ids: without a dataset there are none to match, so image ids are 1..N in sorted file-name order and a class index i
becomes category id i + 1 (COCO ids start at 1). To score the results against an annotation file, pass its ids:
`image_ids` {file name: id} and `category_ids` {class index: category id} (the mode config's `category_ids`).
A folder is read without descending into subfolders; files that cannot be decoded are skipped and listed.
A COCO file (.json) stands for the images it lists, found as every command finds them (`images_dir`, else the folder
`validate` recorded, else beside the JSON); its image ids are used, and its category ids where the model's class
names are all among its category names, so predictions.json scores against that file as it is.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mlcore.data.masks import mask_to_rle
from mlcore.errors import ConfigError, DatasetError
from mlcore.inference.overlay import draw_detections
from mlcore.inference.types import Detections, InferenceEngine
from mlcore.io import atomic_open, write_json_atomic
from mlcore.logs import get_logger
from mlcore.preprocess.inputs import load_rgb

log = get_logger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PREDICTIONS_FILE, SUMMARY_FILE, OVERLAYS_DIR = "predictions.json", "inference.json", "overlays"
_BATCHES_IN_FLIGHT = 2  # batches whose outputs may still be being written while the next one is inferred


@dataclass
class InferenceSummary:
    """What `infer_folder` did: where its outputs are, which images it read (id, file_name, width, height,
    detections) and skipped, the categories it wrote ({"id", "name"}), and its settings."""

    source: str
    output_dir: str
    overlays_dir: str
    predictions_file: str
    engine: str
    task: str
    conf: float
    iou: float
    num_images: int = 0
    num_detections: int = 0
    detections_per_class: dict[str, int] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def infer_folder(engine: InferenceEngine, source: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
                 conf: float = 0.25, iou: float = 0.7, max_det: int = 300, batch_size: int = 8,
                 category_ids: Mapping[Any, int] | None = None, image_ids: Mapping[str, int] | None = None,
                 images_dir: str | os.PathLike[str] | None = None, progress: bool = False,
                 workers: int = 2) -> InferenceSummary:
    """Run `engine` on one image file, every image in a folder or a COCO file's images; write overlays,
    predictions.json, inference.json.

    category_ids: class index (int or "0"-style string) -> COCO category id, default index + 1 (a COCO source: its
    ids, matched by name). image_ids: file name -> COCO image id, default 1..N in sorted order (a COCO source: its
    ids). images_dir: the image folder of a COCO source (`--images`). batch_size: images per engine call.
    workers: threads that decode the next batch and write the previous one's outputs while the engine runs.
    """
    source, output_dir = Path(source), Path(output_dir)
    if is_annotation_file(source):
        files, listed_ids, listed_categories = coco_file_images(source, images_dir)
        image_ids = listed_ids if image_ids is None else image_ids
        category_ids = category_ids if category_ids is not None else _by_name(engine.class_names, listed_categories)
    else:
        files = list_images(source)
    categories = _category_ids(category_ids, len(engine.class_names))
    ids = _image_ids(image_ids, files)
    overlays = output_dir / OVERLAYS_DIR
    summary = InferenceSummary(source=str(source), output_dir=str(output_dir), overlays_dir=str(overlays),
                               predictions_file=str(output_dir / PREDICTIONS_FILE), engine=engine.name,
                               task=engine.task, conf=conf, iou=iou,
                               categories=[{"id": categories[index], "name": name}
                                           for index, name in enumerate(engine.class_names)])
    counts = dict.fromkeys(engine.class_names, 0)
    results: list[dict[str, Any]] = []

    def collect(written: list[Future[_Written]]) -> None:
        for future in written:
            records, image, class_ids = future.result()
            results.extend(records)
            summary.images.append(image)
            for class_id in class_ids:
                counts[engine.class_names[class_id]] += 1

    batches = [files[start:start + batch_size] for start in range(0, len(files), batch_size)]
    # One thread pool decodes the next batch and draws / encodes / writes the last one while the engine runs this
    # one; results are collected in submission order, so every output is what a sequential loop writes.
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mlcore-infer") as pool:
        loading = pool.submit(_load_batch, batches[0]) if batches else None
        writing: deque[list[Future[_Written]]] = deque()
        for number in tqdm(range(len(batches)), desc="infer", unit="batch", disable=not progress):
            assert loading is not None
            loaded, skipped = loading.result()
            if number + 1 < len(batches):
                loading = pool.submit(_load_batch, batches[number + 1])
            for path, reason in skipped:
                log.warning("skipping %s: %s", path, reason)
                summary.skipped.append({"file_name": path.name, "reason": reason})
            if not loaded:
                continue
            predictions = engine.predict([rgb for _, rgb in loaded], conf=conf, iou=iou, max_det=max_det)
            writing.append([pool.submit(_write_outputs, path, rgb, detections, ids[path.name], categories,
                                        engine.class_names, overlays)
                            for (path, rgb), detections in zip(loaded, predictions)])
            while len(writing) > _BATCHES_IN_FLIGHT:  # bound the images held in memory
                collect(writing.popleft())
        while writing:
            collect(writing.popleft())
    summary.num_images, summary.num_detections = len(summary.images), len(results)
    summary.detections_per_class = counts
    write_json_atomic(output_dir / PREDICTIONS_FILE, results)
    write_json_atomic(output_dir / SUMMARY_FILE, summary.to_dict())
    log.info("inferred %d images (%d detections) with %s; outputs in %s", summary.num_images, len(results),
             engine.name, output_dir)
    return summary


_Written = tuple[list[dict[str, Any]], dict[str, Any], list[int]]  # records, summary image entry, class ids


def _load_batch(paths: list[Path]) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[Path, str]]]:
    """The batch's decoded images, and (path, reason) for those that cannot be decoded."""
    loaded, skipped = [], []
    for path in paths:
        try:
            loaded.append((path, load_rgb(path)))
        except DatasetError as exc:
            skipped.append((path, exc.message))
    return loaded, skipped


def _write_outputs(path: Path, rgb: np.ndarray, detections: Detections, image_id: int,
                   categories: Mapping[int, int], class_names: list[str], overlays: Path) -> _Written:
    """One image's overlay file, COCO records and summary entry."""
    records = result_records(image_id, path.name, detections, categories)
    _write_image(draw_detections(rgb, detections, class_names), overlays / path.name)
    image = {"id": image_id, "file_name": path.name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
             "detections": len(detections)}
    return records, image, detections.class_ids.tolist()


def list_images(source: Path) -> list[Path]:
    """The image file itself, or the folder's image files (not its subfolders) in sorted name order."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DatasetError("no such image or folder", where=str(source), fix="give an image file or a folder of images")
    files = sorted(path for path in source.iterdir()
                   if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."))
    if not files:
        raise DatasetError("the folder holds no images", where=str(source),
                           fix=f"put images ({', '.join(IMAGE_SUFFIXES)}) directly in the folder")
    return files


def is_annotation_file(source: Path) -> bool:
    return source.suffix.lower() == ".json" and source.is_file()


def coco_file_images(annotation_file: Path, images_dir: str | os.PathLike[str] | None = None
                     ) -> tuple[list[Path], dict[str, int], dict[str, int]]:
    """The image files a COCO file lists (in file order), their ids by file name, and its category ids by name."""
    from mlcore.data.coco_dataset import CocoDataset

    dataset = CocoDataset(annotation_file, images_dir)
    files = [dataset.images_root / image.file_name for image in dataset.images]
    shared = sorted(name for name, count in Counter(path.name for path in files).items() if count > 1)
    if shared:  # overlays and results are named by file name
        raise DatasetError(f"{len(shared)} file name(s) appear more than once in different folders, e.g. {shared[:3]}",
                           where=str(annotation_file), fix="run infer on each image folder instead")
    if not files:
        raise DatasetError("the file lists no images", where=str(annotation_file),
                           fix="give a COCO file with images, a folder or an image")
    ids = {path.name: int(image.id) for path, image in zip(files, dataset.images)}
    return files, ids, {category.name: int(category.id) for category in dataset.categories}


def _by_name(class_names: list[str], category_ids: Mapping[str, int]) -> dict[int, int] | None:
    """Class index -> the category of the same name; None unless every class has one."""
    if not class_names or any(name not in category_ids for name in class_names):
        return None
    return {index: category_ids[name] for index, name in enumerate(class_names)}


def result_records(image_id: int, file_name: str, detections: Detections,
                   category_ids: Mapping[int, int]) -> list[dict[str, Any]]:
    """COCO result records of one image: one per detection, with "segmentation" (RLE) when there are masks."""
    records = []
    masks = detections.masks.numpy() if detections.masks is not None else None
    for index, ((x1, y1, x2, y2), score, class_id) in enumerate(zip(
            detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist())):
        record = {"image_id": int(image_id), "file_name": file_name, "category_id": int(category_ids[class_id]),
                  "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                  "score": round(float(score), 5)}
        if masks is not None:
            record["segmentation"] = mask_to_rle(masks[index])
        records.append(record)
    return records


def _category_ids(category_ids: Mapping[Any, int] | None, num_classes: int) -> dict[int, int]:
    if category_ids is None:
        return {index: index + 1 for index in range(num_classes)}
    try:
        given = {int(index): int(category) for index, category in category_ids.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"category_ids must map class indices to integer ids, got {dict(category_ids)!r}",
                          where="category_ids", fix='e.g. {"0": 1, "1": 2}') from None
    missing = [index for index in range(num_classes) if index not in given]
    if missing:
        raise ConfigError(f"classes {missing} of the model have no category id", where="category_ids",
                          fix="give an id for every class index (the mode config's category_ids), or leave it out")
    return given


def _image_ids(image_ids: Mapping[str, int] | None, files: list[Path]) -> dict[str, int]:
    if image_ids is None:
        return {path.name: number for number, path in enumerate(files, start=1)}
    missing = [path.name for path in files if path.name not in image_ids]
    if missing:
        raise ConfigError(f"{len(missing)} images have no id, e.g. {missing[:3]}", where="image_ids",
                          fix="map every file name to its COCO image id (from the annotation file), or leave it out")
    return {path.name: int(image_ids[path.name]) for path in files}


def _write_image(image: Image.Image, path: Path) -> None:
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    options: dict[str, Any] = {"quality": 90} if image_format == "JPEG" else {}
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=image_format, **options)


def image_ids_from_annotations(annotations: Mapping[str, Any]) -> dict[str, int]:
    """{file name: image id} from a loaded COCO annotation dict (folders hold images by their base name)."""
    return {Path(str(image["file_name"])).name: int(image["id"]) for image in annotations.get("images", [])}


__all__ = ["IMAGE_SUFFIXES", "InferenceSummary", "coco_file_images", "image_ids_from_annotations", "infer_folder",
           "is_annotation_file", "list_images", "result_records"]
