"""The `images` list: ids, file names (Windows separators, URLs, escapes), and whether each file is there and opens.

A problem many images share (a wrong folder, Git LFS pointers instead of images) is one finding, not one per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from mlcore.data.coco_reader import RawCoco
from mlcore.data.coco_schema import CocoImage, replace_fields
from mlcore.data.findings import FindingGroup, Findings, Severity
from mlcore.data.images import (URL, ImageCheck, ImageRoot, is_safe_relative, normalize_file_name, probe_images,
                                searchable_name)
from mlcore.data.record_decoding import RecordDecoder


@dataclass(slots=True)
class ImageRecord:
    index: int
    id: int
    file_name: str
    width: int
    height: int
    out: bytes | msgspec.Raw


@dataclass
class CheckedImages:
    usable: list[ImageRecord]
    listed_ids: set[int]  # every listed image id, usable or not (a rejected image's annotations are not orphans)
    rejected: dict[int, str]  # image id -> the finding code that rejected it


def check_images(raw: RawCoco, root: ImageRoot, check: ImageCheck, findings: Findings,
                 progress: bool) -> CheckedImages:
    decoder = RecordDecoder(CocoImage, "images", findings)
    typed: list[tuple[int, CocoImage, msgspec.Raw | bytes]] = []
    seen_ids: dict[int, int] = {}
    seen_files: dict[str, int] = {}
    rejected: dict[int, str] = {}
    windows = FindingGroup(Severity.INFO, "file_name_backslashes", "file names use Windows separators ('\\'); "
                           "read and written with '/'", "nothing to do: the cleaned copy has '/'", "images")
    rebased = FindingGroup(Severity.WARNING, "file_name_rebased", f"absolute paths or URLs whose file is in "
                           f"{root.root} by its last part; written as that name", "nothing to do: the cleaned copy has "
                           "names relative to the images folder", "images")
    urls = FindingGroup(Severity.ERROR, "file_name_is_url", "file names are URLs; mlcore reads images from a folder",
                        "download the images into a folder and write each file_name relative to it (then pass "
                        "--images FOLDER)", "images")
    for index, image, record in decoder.records(raw.images):
        where = f"images[{index}]"
        if image.id in seen_ids:
            findings.error("duplicate_image_id", f"{where}.id",
                           f"image id {image.id} is already used by images[{seen_ids[image.id]}]",
                           "give every image a unique id (annotations refer to images by id)")
            continue
        seen_ids[image.id] = index
        name = normalize_file_name(image.file_name)
        is_url = URL.match(name) is not None
        safe = not is_url and is_safe_relative(name)
        base = "" if safe or check == "none" else searchable_name(name)
        if base and (root.root / base).is_file():  # the export left absolute paths or URLs; the files are here
            rebased.add(f"{where}.file_name", f"'{image.file_name}' -> '{base}'")
            record, image.file_name, name = replace_fields(record, file_name=base), base, base
            is_url, safe = False, True
        if is_url:
            urls.add(f"{where}.file_name", f"'{image.file_name}' is a URL; mlcore reads images from a folder",
                     f"'{image.file_name}'")
            rejected[image.id] = urls.code
            continue
        if name != image.file_name:
            windows.add(f"{where}.file_name", f"'{image.file_name}' -> '{name}'")
            record = replace_fields(record, file_name=name)
            image.file_name = name
        if not safe:
            findings.error("file_name_escapes_root", f"{where}.file_name",
                           f"'{name}' is absolute or leaves the image folder",
                           "use a path relative to the image folder without '..', and pass that folder with --images")
            rejected[image.id] = "file_name_escapes_root"
            continue
        if name in seen_files:
            findings.warning("duplicate_file_name", f"{where}.file_name",
                             f"'{name}' is also used by images[{seen_files[name]}]",
                             "merge the two image entries so each file appears once")
        seen_files.setdefault(name, index)
        typed.append((index, image, record))
    decoder.finish()
    windows.emit(findings)
    rebased.emit(findings)
    urls.emit(findings)

    probes = [None] * len(typed) if check == "none" else probe_images(
        (root.root / image.file_name for _, image, _ in typed), check, total=len(typed), progress=progress)
    missing = FindingGroup(Severity.ERROR, "image_missing", f"image files are not in {root.root}",
                           "copy the images there, pass the right folder with --images, or remove the entries",
                           "images")
    lfs = FindingGroup(Severity.ERROR, "image_lfs_pointer", "files are Git LFS pointers, not images",
                       "run `git lfs pull` in the repository that holds them", "images")
    unreadable = FindingGroup(Severity.ERROR, "image_unreadable", "files cannot be read as images",
                              "replace the files with valid JPEG/PNG images or remove the entries", "images")
    records: list[ImageRecord] = []
    for (index, image, record), probe in zip(typed, probes):
        where = f"images[{index}]"
        width, height, out = _whole(image.width), _whole(image.height), record
        if probe is not None and probe.problem:
            group = missing if probe.problem == "missing" else lfs if probe.problem == "lfs pointer" else unreadable
            detail = (f"{root.root / image.file_name} does not exist" if group is missing
                      else f"{root.root / image.file_name} is {probe.problem}")
            group.add(f"{where}.file_name", detail, f"'{image.file_name}'" if group is missing else None)
            rejected[image.id] = group.code
            continue
        if width is None or height is None or width <= 0 or height <= 0:
            if probe is None:
                findings.error("image_size_missing", where, "width/height missing, fractional or not positive: "
                               f"width={_shown(image.width)}, height={_shown(image.height)}",
                               "write the image's width and height, or run with image checks on to read them")
                rejected[image.id] = "image_size_missing"
                continue
            width, height = probe.size
            out = replace_fields(record, width=width, height=height)
            findings.warning("image_size_filled", where,
                             f"width/height ({_shown(image.width)}x{_shown(image.height)}) missing, fractional or not "
                             f"positive; read {width}x{height} from the file",
                             "nothing to do: the cleaned copy has them")
        elif probe is not None and probe.size != (width, height):
            hint = (" The file's EXIF orientation rotates it: the JSON may describe the rotated image."
                    if probe.exif_transposed and probe.size == (height, width) else "")
            findings.error("image_size_mismatch", where,
                           f"JSON says {width}x{height} but {image.file_name} is {probe.size[0]}x{probe.size[1]}."
                           + hint, "correct width/height (and annotations, if they were made on another size)")
            rejected[image.id] = "image_size_mismatch"
            continue
        records.append(ImageRecord(index, image.id, image.file_name, width, height, out))
    if typed and len(missing) == len(typed) and root.found_none:
        message, fix = root.not_found_message(raw.path)
        findings.error("images_not_found", "images", message, fix)  # one root cause: the folder, not each image
        rejected.update({image_id: "images_not_found" for image_id, code in rejected.items() if code == missing.code})
    else:
        missing.emit(findings)
    lfs.emit(findings)
    unreadable.emit(findings)
    if not raw.images:
        findings.error("no_images", "images", "the file lists no images", "export the dataset with its images")
    return CheckedImages(usable=records, listed_ids=set(seen_ids), rejected=rejected)


def _shown(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def _whole(value: float | None) -> int | None:
    """Exporters write sizes as 640 or 640.0; anything else (640.5, absent) counts as missing."""
    return int(value) if value is not None and float(value).is_integer() else None
