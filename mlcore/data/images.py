"""Where images live, whether a file_name stays inside that place, and whether each file opens at its stated size."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

ImageCheck = Literal["full", "header", "none"]
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height when applied


def candidate_image_roots(annotation_file: PurePath, images_dir: PurePath | None = None,
                          file_names: Sequence[str] = ()) -> list:
    """Folders tried in order, the documented rule (docs/ANNOTATION_FORMATS.md, "Where the images are").

    With --images: that folder, and that folder minus a prefix the file names repeat (`--images data/images` with
    `file_name: images/a.jpg` means `data/`). Without: the JSON's folder, `images/` beside it, `../images` (CVAT:
    `annotations/instances_default.json` + `images/`), COCO's own layout (`annotations/instances_train2017.json` with
    images in `../train2017/`) and the JSON's parent folder.
    """
    if images_dir is not None:
        roots = [images_dir]
        first_parts = {normalize_file_name(name).split("/", 1)[0] for name in file_names[:SAMPLE_NAMES]}
        if images_dir.name and images_dir.name in first_parts:
            roots.append(images_dir.parent)
        return roots
    folder = annotation_file.parent
    roots = [folder, folder / "images", folder.parent / "images"]
    split_name = annotation_file.stem.rsplit("_", 1)[-1]
    if folder.name == "annotations" and split_name != annotation_file.stem:
        roots.append(folder.parent / split_name)
    roots.append(folder.parent)
    return list(dict.fromkeys(roots))


SAMPLE_NAMES = 50  # file names tried under each candidate folder


@dataclass(frozen=True)
class ImageRoot:
    """The folder chosen for a file's images, and what the search saw (for a message when nothing matched)."""

    root: Path
    tried: tuple[Path, ...]
    hits: int  # sampled names found under `root`
    sampled: int
    names: tuple[str, ...] = ()  # the sampled names

    @property
    def found_none(self) -> bool:
        return self.sampled > 0 and self.hits == 0

    def not_found_message(self, annotation_file: Path) -> tuple[str, str]:
        """(message, fix) for a dataset none of whose sampled images is under any candidate folder."""
        tried = ", ".join(str(path) for path in self.tried)
        message = f"none of the {self.sampled} image file names tried exists under any of: {tried}"
        holder, count = folder_holding_most(annotation_file.parent, self.names)
        if holder is not None:
            return (message + f"; {holder} holds {count} of them",
                    f"pass --images '{holder}' (the folder the file names are relative to)")
        return message, ("pass --images with the folder the file names are relative to, or copy the images next to "
                         "the JSON")


def find_image_root(annotation_file: Path, file_names: Sequence[str], images_dir: Path | None = None) -> ImageRoot:
    """The candidate folder holding most of a sample of FILE_NAMES (the first candidate on a tie)."""
    names = [searchable_name(name) for name in _spread(file_names, SAMPLE_NAMES)]
    names = [name for name in names if name]
    candidates = candidate_image_roots(annotation_file, images_dir, names)
    best, best_hits = candidates[0], -1
    for root in candidates:
        hits = sum((root / name).is_file() for name in names)
        if hits > best_hits:
            best, best_hits = root, hits
    return ImageRoot(root=best, tried=tuple(candidates), hits=max(best_hits, 0), sampled=len(names),
                     names=tuple(names))


def choose_image_root(annotation_file: Path, file_names: Sequence[str], images_dir: Path | None = None) -> Path:
    """The images folder for a COCO file's names; a DatasetError naming the folders tried when none holds any."""
    found = find_image_root(annotation_file, file_names, images_dir)
    if found.found_none:
        from mlcore.errors import DatasetError

        message, fix = found.not_found_message(annotation_file)
        raise DatasetError(message, where=str(annotation_file), fix=fix)
    return found.root


def folder_holding_most(start: Path, names: Sequence[str], max_depth: int = 3,
                        max_folders: int = 2000) -> tuple[Path | None, int]:
    """The folder under START (or its parent) where most of NAMES' last parts are files; for the error message."""
    wanted = {PurePosixPath(name).name for name in names}
    best, best_count, seen = None, 0, 0
    for top in dict.fromkeys([start, start.parent]):
        for folder, dirs, files in os.walk(top):
            seen += 1
            depth = len(Path(folder).relative_to(top).parts)
            if depth >= max_depth or seen > max_folders:
                dirs[:] = []
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            count = len(wanted.intersection(files))
            if count > best_count:
                best, best_count = Path(folder), count
    return best, best_count


def searchable_name(file_name: str) -> str:
    """The name to look for under an images folder: the file name itself when it is a safe relative path, else the
    last part of an absolute path or URL (Label Studio writes `/data/upload/3/a.jpg` or
    `http://host/data/local-files/?d=photos/a.jpg` when its export leaves the images out)."""
    name = normalize_file_name(file_name)
    if is_safe_relative(name) and not URL.match(name):
        return name
    if URL.match(name):
        parts = urlsplit(name)
        name = unquote(parse_qs(parts.query).get("d", [parts.path])[0])
    return PurePosixPath(name).name


URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def normalize_file_name(file_name: str) -> str:
    """Windows exports (Label Studio on Windows) write `images\\a.jpg`; the same file is `images/a.jpg`."""
    return file_name.replace("\\", "/")


def _spread(items: Sequence[str], count: int) -> list[str]:
    """Up to COUNT items spread over the whole list (not only its head: exports are often sorted by folder)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


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
        return ImageProbe(size=None, problem="lfs pointer" if is_lfs_pointer(path) else f"unreadable: {exc}")
    except ImportError:
        # Once ultralytics is imported, Image.open retries unknown files with pi-heif and raises this when absent.
        return ImageProbe(size=None, problem="lfs pointer" if is_lfs_pointer(path)
                          else "unreadable: not a known image format")
    return ImageProbe(size=size, exif_transposed=transposed)


LFS_POINTER_START = b"version https://git-lfs.github.com/spec/"


def is_lfs_pointer(path: Path) -> bool:
    """A repository cloned without `git lfs pull` holds small text pointers where the images should be."""
    with open(path, "rb") as handle:
        return handle.read(len(LFS_POINTER_START)) == LFS_POINTER_START


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
