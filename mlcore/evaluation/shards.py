"""Evaluation in shards: several workers each predict part of a split, then one step merges and scores once.

    shard = Shard(index=0, count=3)                    # on each worker, its own index
    predict_target_shard("test.json", shard, "eval/shards/predictions.shard-1-of-3.json", model="best.pt")
    result, files = evaluate_shards("test.json", shard_files, output="eval/")     # once, after every shard

(both in mlcore.evaluation.commands). mAP is not additive over images, so a shard hands on its predictions (one JSON
file), never its scores; the merge puts the records back in the split's order and scores them exactly as one run
would: the same metrics.json, PR curves and predictions.json. A shard is whole batches of the full run (every n-th
batch), so each image is predicted in the very batch it would be in unsharded, and the numbers match to the bit.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlcore.errors import ConfigError, DatasetError
from mlcore.evaluation.results import Predictions
from mlcore.io import write_json_atomic

SHARD_FORMAT = "mlcore-evaluation-shard"
FORMAT_VERSION = 1
Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """Part `index` (0-based) of `count` equal parts of a list of images: the part one worker takes."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard index {self.index} of {self.count} shards does not exist", where="shard",
                              fix="pass at least 1 shard, and an index from 0 to shards - 1")

    def pick(self, items: Sequence[Item]) -> list[Item]:
        """Every count-th item, starting at index (interleaved, so shards stay balanced over a sorted list)."""
        return list(items)[self.index::self.count]

    def batches(self, size: int, batch_size: int) -> list[list[int]]:
        """This shard's batches of indices into `size` items: every count-th batch of the unsharded run."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        return self.pick([list(range(start, min(start + batch_size, size))) for start in range(0, size, batch_size)])

    @property
    def name(self) -> str:
        return f"{self.index + 1}-of-{self.count}"


@dataclass
class ShardFile:
    """A predicted shard on disk, as its worker reports it (worker: host:pid, to see where the work went)."""

    path: Path
    index: int
    count: int
    images: int
    detections: int
    seconds: float
    worker: str


def shard_file_name(shard: Shard) -> str:
    return f"predictions.shard-{shard.name}.json"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def write_shard(predictions: Predictions, shard: Shard, path: str | os.PathLike[str], *, data_sha256: str
                ) -> ShardFile:
    """One shard's predictions and the annotation file's checksum, as JSON (atomically)."""
    path, worker = Path(path), worker_name()
    write_json_atomic(path, {
        "format": SHARD_FORMAT, "version": FORMAT_VERSION, "shard": shard.index, "shards": shard.count,
        "data_sha256": data_sha256, "worker": worker, "name": predictions.name,
        "image_ids": predictions.image_ids, "categories": predictions.categories,
        "iou_types": predictions.iou_types, "class_agnostic": predictions.class_agnostic,
        "settings": predictions.settings, "seconds": predictions.seconds, "records": predictions.records})
    return ShardFile(path, shard.index, shard.count, predictions.num_images, len(predictions.records),
                     predictions.seconds, worker)


def merge_shards(shard_files: Sequence[str | os.PathLike[str]], annotations: Mapping[str, Any], *,
                 data_sha256: str) -> Predictions:
    """Every shard of one split's predictions as one `Predictions`, records in the split's image order.

    Refuses (DatasetError) a missing or repeated shard, shards of another annotation file or predicted with other
    settings, and images predicted twice or never.
    """
    shards = [_read(Path(path)) for path in shard_files]
    if not shards:
        raise ConfigError("no shard predictions to merge", where="shard_files", fix="predict the shards first")
    count = shards[0]["shards"]
    first = shards[0]
    found = sorted(shard["shard"] for shard in shards)
    if any(shard["shards"] != count for shard in shards) or found != list(range(count)):
        missing = sorted(set(range(count)) - set(found))
        raise DatasetError(f"expected shards 1..{count} once each, got {[index + 1 for index in found]}"
                           + (f" (missing: {[index + 1 for index in missing]})" if missing else ""),
                           where=str(shard_files[0]), fix="predict the missing shards; merge one split's at a time")
    for path, shard in zip(shard_files, shards):
        if shard["data_sha256"] != data_sha256:
            raise DatasetError("this shard was predicted on another version of the annotation file", where=str(path),
                               fix="predict the shard again on this file")
        different = [key for key in ("name", "categories", "iou_types", "class_agnostic")
                     if shard[key] != first[key]] + _different_settings(shard["settings"], first["settings"])
        if different:
            raise DatasetError(f"this shard differs from shard {first['shard'] + 1} in {', '.join(different)}",
                               where=str(path), fix="predict every shard with the same model and settings")
    order = {int(image["id"]): position for position, image in enumerate(annotations.get("images", []))}
    image_ids = [image_id for shard in shards for image_id in shard["image_ids"]]
    if sorted(image_ids) != sorted(order):
        raise DatasetError(f"the shards hold {len(set(image_ids))} distinct of the file's {len(order)} images "
                           f"({len(image_ids)} predictions)", where=str(shard_files[0]),
                           fix="predict every shard of this split (same shard count) and merge them all")
    records = sorted((record for shard in shards for record in shard["records"]),
                     key=lambda record: order[int(record["image_id"])])  # stable: each image's own order is kept
    devices = sorted({str(shard["settings"].get("device")) for shard in shards})
    settings = {**first["settings"], **({"device": ", ".join(devices)} if "device" in first["settings"] else {})}
    return Predictions(first["name"], records, sorted(image_ids, key=order.__getitem__), first["categories"],
                       first["iou_types"], first["class_agnostic"], settings,
                       sum(float(shard["seconds"]) for shard in shards))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError("shard predictions not found", where=str(path),
                           fix="predict this shard first (every shard must finish before the merge)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"shard predictions unreadable: {error}", where=str(path),
                           fix="predict this shard again") from None
    if not isinstance(data, dict) or data.get("format") != SHARD_FORMAT or data.get("version") != FORMAT_VERSION:
        raise DatasetError(f"not a version {FORMAT_VERSION} {SHARD_FORMAT} file", where=str(path),
                           fix="pass the files the shard prediction step wrote")
    return data


def _different_settings(settings: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Settings that differ, the device aside (each worker names its own, e.g. cuda:0 on every machine)."""
    keys = (set(settings) | set(reference)) - {"device"}
    return [f"settings.{key}" for key in sorted(keys) if settings.get(key) != reference.get(key)]
