"""Where images live, whether a file_name stays inside that place, and whether each file opens at its stated size."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

ImageCheck = Literal["full", "header", "none"]
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height when applied


def candidate_image_roots(annotation_file: Path) -> list[Path]:
    """Folders tried in order when --images is not given.

    The JSON's own folder, an `images/` folder beside it, and COCO's own layout (`annotations/instances_train2017.json`
    with images in `../train2017/`).
    """
    folder = annotation_file.parent
    roots = [folder, folder / "images"]
    split_name = annotation_file.stem.rsplit("_", 1)[-1]
    if folder.name == "annotations" and split_name != annotation_file.stem:
        roots.append(folder.parent / split_name)
    return roots


def choose_image_root(annotation_file: Path, file_names: list[str], sample: int = 50) -> Path:
    """Pick the candidate root where most of the first `sample` images exist (the JSON's folder on a tie)."""
    names = [name for name in file_names[:sample] if is_safe_relative(name)]
    best, best_hits = annotation_file.parent, -1
    for root in candidate_image_roots(annotation_file):
        hits = sum((root / name).is_file() for name in names)
        if hits > best_hits:
            best, best_hits = root, hits
    return best


def is_safe_relative(file_name: str) -> bool:
    """True when file_name is a relative path that stays under the image root (no '..' escape, not absolute)."""
    if not file_name or file_name.startswith(("/", "\\")) or (len(file_name) > 1 and file_name[1] == ":"):
        return False
    normalized = os.path.normpath(PurePosixPath(file_name.replace("\\", "/")))
    return not (normalized == ".." or normalized.startswith("../") or os.path.isabs(normalized))


@dataclass(frozen=True)
class ImageProbe:
    """What opening one image told us; `problem` is None when it opened."""

    size: tuple[int, int] | None  # width, height as stored in the file
    exif_transposed: bool = False
    problem: str | None = None  # 'missing' or 'unreadable: <reason>'


def probe_image(path: Path, check: ImageCheck) -> ImageProbe:
    if not path.is_file():
        return ImageProbe(size=None, problem="missing")
    try:
        with Image.open(path) as image:
            size = image.size
            transposed = image.getexif().get(EXIF_ORIENTATION_TAG) in EXIF_TRANSPOSED
            if check == "full":
                image.load()  # decodes every pixel: catches truncated files a header read misses
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return ImageProbe(size=None, problem=f"unreadable: {exc}")
    except ImportError:
        # Once ultralytics is imported, Image.open retries unknown files with pi-heif and raises this when absent.
        return ImageProbe(size=None, problem="unreadable: not a known image format")
    return ImageProbe(size=size, exif_transposed=transposed)


def probe_images(
    paths: Iterable[Path], check: ImageCheck, *, total: int, progress: bool = True, workers: int | None = None
) -> list[ImageProbe]:
    """Probe many images in threads (the work is file I/O), in input order, with a progress bar."""
    workers = workers or min(16, (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda path: probe_image(path, check), paths)
        return list(tqdm(results, total=total, desc="checking images", unit="img", disable=not progress))


def images_fingerprint(images_root: Path, file_names: Iterable[str]) -> str:
    """sha256 over each image's name, size and modification time: cheap (one stat per image, no reads), and it
    changes when an image is replaced under the same name, which the annotation file's own hash cannot see."""
    digest = hashlib.sha256()
    for name in sorted(file_names):
        try:
            stat = (images_root / name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()
