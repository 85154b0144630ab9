"""Teacher labels cached on disk: each image goes through the teachers at most once, ever.

    cache = TeacherTargetCache(run_dir / "teacher_cache", grounded, feature_source="grounding_dino")
    cache.fill(image_paths)                  # labels only the images without a file yet (tqdm bar, batched)
    output = cache.get(image_path)           # TeacherOutput, read from disk (labelled first if missing)

One `.npz` file per image (no pickle), written atomically, so a killed labelling run resumes where it stopped and a
reader never sees a torn file. The file name is a sha256 over everything that changes the labels: the image's
content, each teacher's preset, base weights (revision, sha256) and adapter checksum, classes and prompts,
thresholds, preprocessing, dtype and labelling precision, the feature source and this format's version; for segmentation-only labelling also
the prompting boxes.
A changed adapter or threshold therefore never reuses stale labels, and stale files are simply never read.

Masks are stored as COCO RLE (exact, small); features as float16.

Determinism: a batch only holds images whose teacher inputs have the same size. Grounding DINO pads a batch to its
largest image, so otherwise an image's features (which span the padded canvas) and, slightly, its detections would
depend on which images happened to share its batch. Grouping costs nothing on uniform datasets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image
from tqdm import tqdm

from mlcore.errors import ConfigError, ModelError
from mlcore.io import atomic_open, sha256_file
from mlcore.logs import get_logger
from mlcore.preprocess import load_rgb
from mlcore.teachers.autocast import precision_name
from mlcore.teachers.grounded_sam import GroundedSAM
from mlcore.teachers.types import Teacher, TeacherPrediction

log = get_logger(__name__)

FORMAT_VERSION = 1
FeatureSource = Literal["grounding_dino", "sam"]
FEATURE_SOURCES: tuple[str, ...] = ("grounding_dino", "sam")
DINO_FEATURE_STRIDE = 16  # the encoder level kept for distillation: YOLOv8's P4 resolution


@dataclass
class TeacherOutput:
    """One image's teacher labels in its ORIGINAL pixel frame, as read back from the cache.

    boxes (n, 4) float32 xyxy; scores (n,) float32 (1.0 for given boxes); class_ids (n,) int64 (-1: given box
    without a class); class_scores (n, C) float32 Grounding DINO per-class probabilities of each detection, NaN
    rows when only SAM ran; masks (n, H, W) uint8 and mask_scores (n,) or None without SAM; features (Ct, h, w)
    float16 over the teacher's whole input canvas with feature_meta its `PreprocessMeta.to_dict()`, or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_scores: np.ndarray
    image_size: tuple[int, int]  # height, width
    masks: np.ndarray | None = None
    mask_scores: np.ndarray | None = None
    features: np.ndarray | None = None
    feature_meta: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class LabelRequest:
    """One image to label; boxes (n, 4) xyxy original frame and class_ids (n,) prompt SAM when it is the only
    teacher (segmentation_only). They are ignored when Grounding DINO is loaded: it finds its own boxes."""

    image_path: Path
    boxes: np.ndarray | None = None
    class_ids: np.ndarray | None = None


class TeacherTargetCache:
    """Per-image teacher labels on disk, keyed by image content and everything that shapes the labels."""

    def __init__(self, folder: str | os.PathLike[str], teachers: GroundedSAM, *,
                 feature_source: FeatureSource | None = None, batch_size: int = 4, progress: bool = True) -> None:
        if feature_source is not None and feature_source not in FEATURE_SOURCES:
            raise ConfigError(f"unknown feature source {feature_source!r}", where="feature_source",
                              fix=f"use one of {', '.join(FEATURE_SOURCES)}, or null for no features")
        if feature_source is not None and feature_source not in teachers.teachers:
            raise ConfigError(f"feature distillation from {feature_source} needs that teacher, but this mode loads "
                              f"only {', '.join(teachers.teachers)}", where="feature_source",
                              fix=f"use one of {', '.join(teachers.teachers)}, or turn feature distillation off")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.folder = Path(folder)
        self.teachers = teachers
        self.feature_source = feature_source
        self.batch_size = batch_size
        self.progress = progress
        self.teacher_calls = 0  # images this object passed to the teachers (the rest came from disk)
        self._image_hashes: dict[Path, str] = {}

    @property
    def can_label_without_boxes(self) -> bool:
        """False when only SAM is loaded: it needs prompt boxes (ground truth), so unannotated images get no labels."""
        return self.teachers.grounding_dino is not None

    @property
    def num_classes(self) -> int:
        return len(self.teachers.class_names)

    def settings(self) -> dict[str, Any]:
        """Everything besides the image that changes the labels (read on every call: a changed threshold counts)."""
        grounded = self.teachers
        return {"format_version": FORMAT_VERSION, "feature_source": self.feature_source,
                "teachers": {family: _teacher_identity(teacher) for family, teacher in grounded.teachers.items()},
                "preprocessing": {family: pre.config.model_dump(mode="json")
                                  for family, pre in grounded.preprocessors.items()},
                "class_names": grounded.class_names,
                "class_prompts": {name: grounded.class_prompts[name] for name in sorted(grounded.class_prompts)},
                "box_threshold": grounded.box_threshold, "text_threshold": grounded.text_threshold,
                "nms_iou": grounded.nms_iou, "max_detections": grounded.max_detections,
                "precision": {family: precision_name(dtype) for family, dtype in grounded.dtypes.items()}}

    def key(self, request: LabelRequest | str | os.PathLike[str], settings: dict[str, Any] | None = None) -> str:
        request = _as_request(request)
        digest = hashlib.sha256()
        digest.update(_image_sha256(request.image_path, self._image_hashes).encode())
        digest.update(json.dumps(settings or self.settings(), sort_keys=True).encode())
        if not self.can_label_without_boxes:  # SAM-only: the prompts are part of what was labelled
            boxes, class_ids = _prompts(request)
            digest.update(boxes.tobytes())
            digest.update(class_ids.tobytes())
        return digest.hexdigest()

    def path(self, request: LabelRequest | str | os.PathLike[str], settings: dict[str, Any] | None = None) -> Path:
        return self.folder / f"{self.key(request, settings)}.npz"

    def fill(self, items: Iterable[LabelRequest | str | os.PathLike[str]]) -> int:
        """Label every item without a valid file yet, in batches of equal teacher input size; returns how many."""
        settings = self.settings()
        requests = [self._check_prompts(_as_request(item)) for item in items]
        by_path = {self.path(request, settings): request for request in requests}  # duplicates label once
        missing = [(path, request) for path, request in by_path.items() if not _readable(path)]
        if not missing:
            return 0
        log.info("labelling %d image(s) with %s; cache: %s", len(missing), " + ".join(self.teachers.teachers),
                 self.folder)
        groups: dict[tuple, list[tuple[Path, LabelRequest]]] = {}
        for path, request in missing:
            groups.setdefault(self._input_sizes(request.image_path), []).append((path, request))
        with tqdm(total=len(missing), desc="teacher labels", unit="img", disable=not self.progress) as bar:
            for group in groups.values():
                for start in range(0, len(group), self.batch_size):
                    part = group[start:start + self.batch_size]
                    self._label(part)
                    bar.update(len(part))
        return len(missing)

    def get(self, image_path: str | os.PathLike[str], boxes: np.ndarray | None = None,
            class_ids: np.ndarray | None = None) -> TeacherOutput:
        """The image's teacher labels from disk, labelling it first when missing (boxes: see LabelRequest)."""
        request = self._check_prompts(LabelRequest(Path(image_path), _optional_array(boxes, np.float32),
                                                   _optional_array(class_ids, np.int64)))
        path = self.path(request)
        output = _read(path)
        if output is None:
            self._label([(path, request)])
            output = _read(path)
            assert output is not None
        return output

    # -- labelling ----------------------------------------------------------------------------------------------

    def _check_prompts(self, request: LabelRequest) -> LabelRequest:
        if request.boxes is None and not self.can_label_without_boxes:
            raise ModelError("only SAM is loaded (segmentation_only): it labels an image only from prompt boxes, and "
                             "none were given", where=str(request.image_path),
                             fix="pass the image's ground-truth boxes; images without annotations cannot be labelled "
                                 "in this mode (skip them, or add Grounding DINO with a detection mode)")
        return request

    def _input_sizes(self, image_path: Path) -> tuple:
        """Each teacher's input size for this image, from the file header (no decoding)."""
        height, width = _image_size(image_path)
        return tuple(pre.plan(height, width).input_size for pre in self.teachers.preprocessors.values())

    def _label(self, part: list[tuple[Path, LabelRequest]]) -> None:
        rgbs = [load_rgb(request.image_path) for _, request in part]
        sam_only = not self.can_label_without_boxes
        prompts = [_prompts(request) for _, request in part] if sam_only else None
        predictions = self.teachers.predict(
            rgbs, boxes=[boxes for boxes, _ in prompts] if prompts else None,
            class_ids=[ids for _, ids in prompts] if prompts else None, extract_features=True)
        self.teacher_calls += len(part)
        for (path, request), rgb, prediction in zip(part, rgbs, predictions):
            arrays = self._arrays(prediction, rgb.shape[:2])
            info = {"format_version": FORMAT_VERSION, "image": str(request.image_path),
                    "image_sha256": _image_sha256(request.image_path, self._image_hashes),
                    "image_size": list(rgb.shape[:2]), "feature_source": self.feature_source}
            if self.feature_source is not None:
                info["feature_meta"] = self.teachers.preprocessors[self.feature_source].plan(*rgb.shape[:2]).to_dict()
            with atomic_open(path) as handle:
                np.savez(handle, info=np.array(json.dumps(info)), **arrays)

    def _arrays(self, prediction: TeacherPrediction, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
        count = len(prediction)
        features = prediction.features
        if "dino_class_scores" in features:
            class_scores = features["dino_class_scores"][features["dino_kept_queries"]].float().numpy()
        else:
            class_scores = np.full((count, self.num_classes), np.nan, dtype=np.float32)
        arrays = {"boxes": prediction.boxes.float().numpy().reshape(-1, 4),
                  "scores": prediction.scores.float().numpy().reshape(-1),
                  "class_ids": prediction.class_ids.long().numpy().reshape(-1),
                  "class_scores": class_scores.astype(np.float32).reshape(count, self.num_classes)}
        if prediction.masks is not None:
            counts, lengths = encode_masks(prediction.masks.numpy())
            arrays.update(mask_counts=counts, mask_lengths=lengths,
                          mask_scores=prediction.mask_scores.float().numpy().reshape(-1))
        if self.feature_source == "grounding_dino":
            arrays["features"] = dino_feature_map(features["dino_encoder_vision"], features["dino_spatial_shapes"],
                                                  self.teachers.preprocessors["grounding_dino"].plan(*image_size))
        elif self.feature_source == "sam":
            arrays["features"] = features["sam_image_embeddings"].to(torch.float16).numpy()
        return arrays


# -- storage ----------------------------------------------------------------------------------------------------

def encode_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, H, W) binary masks -> COCO RLE counts of all masks concatenated (uint8) and each one's length."""
    if masks.shape[0] == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    counts = [rle["counts"] for rle in rles]
    return np.frombuffer(b"".join(counts), dtype=np.uint8).copy(), np.array([len(c) for c in counts], dtype=np.int64)


def decode_masks(counts: np.ndarray, lengths: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The inverse of `encode_masks`: (n, H, W) uint8."""
    height, width = image_size
    if lengths.size == 0:
        return np.zeros((0, height, width), dtype=np.uint8)
    data, ends = counts.tobytes(), np.cumsum(lengths)
    rles = [{"size": [height, width], "counts": data[end - length:end]} for end, length in zip(ends, lengths)]
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1)).astype(np.uint8)


def dino_feature_map(encoder_vision: torch.Tensor, spatial_shapes: torch.Tensor, meta: Any) -> np.ndarray:
    """Grounding DINO's flattened multi-scale encoder memory (S, d) -> its stride-16 level as (d, h, w) float16.

    The level is picked by its stride over the input canvas (meta.input_size), not by position, so a backbone with
    other levels still gives the P4-like map."""
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    strides = [meta.input_size[0] / h for h, _ in shapes]
    level = min(range(len(shapes)), key=lambda i: abs(math.log2(strides[i]) - math.log2(DINO_FEATURE_STRIDE)))
    start = sum(h * w for h, w in shapes[:level])
    height, width = shapes[level]
    block = encoder_vision[start:start + height * width]
    return block.reshape(height, width, -1).permute(2, 0, 1).to(torch.float16).contiguous().numpy()


def _read(path: Path) -> TeacherOutput | None:
    """The stored output, or None when the file is missing or unreadable (then it is labelled again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            data = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("teacher cache file %s is unreadable (%s): labelling the image again", path, exc)
        return None
    info = json.loads(str(data["info"]))
    image_size = (int(info["image_size"][0]), int(info["image_size"][1]))
    masks = (decode_masks(data["mask_counts"], data["mask_lengths"], image_size) if "mask_counts" in data
             else None)
    return TeacherOutput(boxes=data["boxes"], scores=data["scores"], class_ids=data["class_ids"],
                         class_scores=data["class_scores"], image_size=image_size, masks=masks,
                         mask_scores=data.get("mask_scores"), features=data.get("features"),
                         feature_meta=info.get("feature_meta"))


def _readable(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "info.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


# -- keys -------------------------------------------------------------------------------------------------------

def _teacher_identity(teacher: Teacher) -> dict[str, Any]:
    """What makes one teacher's outputs: preset, base weights (revision and sha256, not the folder they sit in) and
    the adapter's checksum (None: no adapter saved, e.g. a bare base model or LoRA applied in memory: such a teacher
    is keyed by its preset and weights alone)."""
    return {"preset": teacher.preset.name, "weights": teacher.base_weights.cache_key,
            "adapter_sha256": teacher.adapter.adapter_sha256 if teacher.adapter is not None else None,
            "dtype": str(teacher.dtype)}


def _image_sha256(path: Path, known: dict[Path, str]) -> str:
    if path not in known:
        if not path.is_file():
            load_rgb(path)  # raises the DatasetError a person can act on
        known[path] = sha256_file(path)
    return known[path]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header; stored pixels, as load_rgb decodes them (no EXIF rotation)."""
    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except Exception:  # noqa: BLE001 - load_rgb turns it into the DatasetError a person can act on
        height, width = load_rgb(path).shape[:2]
    return int(height), int(width)


def _as_request(item: LabelRequest | str | os.PathLike[str]) -> LabelRequest:
    if isinstance(item, LabelRequest):
        return LabelRequest(Path(item.image_path), _optional_array(item.boxes, np.float32),
                            _optional_array(item.class_ids, np.int64))
    return LabelRequest(Path(item))


def _optional_array(values: Sequence | np.ndarray | torch.Tensor | None, dtype: type) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(values, dtype=dtype))


def _prompts(request: LabelRequest) -> tuple[np.ndarray, np.ndarray]:
    assert request.boxes is not None
    boxes = request.boxes.reshape(-1, 4)
    class_ids = (request.class_ids.reshape(-1) if request.class_ids is not None
                 else np.full(len(boxes), -1, dtype=np.int64))
    if len(class_ids) != len(boxes):
        raise ValueError(f"{request.image_path}: {len(boxes)} boxes but {len(class_ids)} class ids")
    return boxes, class_ids

