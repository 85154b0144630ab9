"""A local copy of a COCO dataset that lives in S3: the annotation JSON and the images it names.

    dataset = mirror_coco_dataset("s3://team/coco/annotations.json", "runs/latest/source")
    prepare_dataset(dataset.annotations, images_dir=dataset.images)

The copy keeps the bucket's layout (``<destination>/<bucket>/<key>``), so several datasets that share images share
the files. Images are looked for the way a local dataset's are (``mlcore.data.images.candidate_image_roots``): under
the JSON's prefix, under ``images/`` beside it, or in COCO's ``annotations/instances_<split>.json`` ->
``<split>/`` layout; an explicit ``images=s3://bucket/prefix`` wins.

Every download is checked (its size, and the sha256 the object records in ``x-amz-meta-sha256`` when it has one)
and lands atomically (a temp file, then a rename). What was fetched is remembered by ETag and size in
``<destination>/.mlcore-mirror.json``: a rerun downloads only objects that changed in S3 and local files that were
touched since. S3 failures go through S3Store's retry loop; an object that is not there is a DatasetError naming its
s3:// URL and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
from botocore.exceptions import ClientError
from tqdm import tqdm

from mlcore.data.coco_reader import read_coco
from mlcore.data.images import candidate_image_roots, is_safe_relative
from mlcore.errors import DatasetError
from mlcore.io import atomic_open, write_json_atomic
from mlcore.logs import get_logger
from mlcore.storage.base import StorageError, join_key, normalize_key
from mlcore.storage.location import is_s3_url, split_s3_url
from mlcore.storage.retry import RetryPolicy
from mlcore.storage.s3 import SHA256_METADATA, ObjectInfo, S3Store
from mlcore.storage.s3_client import make_s3_client
from mlcore.storage.s3_errors import MISSING_KEY_CODES, VerificationMismatch, error_code

log = get_logger(__name__)

INDEX_NAME = ".mlcore-mirror.json"
INDEX_FORMAT = 1
SAMPLE_NAMES = 50  # image names tried under each candidate prefix, as choose_image_root does locally
SAVE_EVERY = 200  # downloads between two saves of the index, so a killed mirror resumes where it was
CHUNK = 1 << 20
MISSING_IMAGES_SHOWN = 5


@dataclass(frozen=True)
class MirroredDataset:
    """Where the local copy lies, where it came from, and what this call had to download."""

    annotations: Path  # the local annotation JSON
    images: Path | None  # the local image folder to validate with; None: found beside the JSON, as usual
    source: str  # the annotation file as given (s3:// URL or path)
    images_source: str | None  # where the images came from (s3:// URL or path); None: beside the JSON
    downloaded: int
    reused: int
    bytes_downloaded: int


def mirror_coco_dataset(
    annotations: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    client: Any = None,
    retry: RetryPolicy | None = None,
    workers: int = 16,
    progress: bool = True,
) -> MirroredDataset:
    """Copy ANNOTATIONS (``s3://bucket/key.json`` or a local path) and, when they are in S3, the images it names
    into DESTINATION; files already there and unchanged in S3 are kept.

    `images`: ``s3://bucket/prefix`` holding the images by ``file_name``, or a local folder (then only the JSON is
    fetched); default: found from the JSON's location. `client`: a ready boto3 S3 client (e.g. built from a Prefect
    AWS credentials block); default: one from the environment and the AWS credential chain.
    """
    annotations, images = os.fspath(annotations), (os.fspath(images) if images is not None else None)
    mirror = _Mirror(Path(destination).resolve(), client, retry, workers, progress)
    try:
        local_json = mirror.fetch_annotations(annotations) if is_s3_url(annotations) else Path(annotations)
        if is_s3_url(images) or (images is None and is_s3_url(annotations)):
            names = image_file_names(local_json)
            bucket, prefix = mirror.images_location(annotations, images, names)
            mirror.fetch_images(bucket, prefix, names, annotations)
            images_root, images_source = mirror.local_path(bucket, prefix), f"s3://{bucket}/{prefix}".rstrip("/")
        else:  # local images (or no images given for a local JSON): used where they are
            images_root, images_source = (Path(images), images) if images is not None else (None, None)
    finally:
        mirror.save_index()
    if mirror.downloaded or mirror.reused:
        log.info("mirrored %s into %s: %d file(s) downloaded (%.1f MB), %d already up to date", annotations,
                 mirror.destination, mirror.downloaded, mirror.bytes / 1e6, mirror.reused)
    return MirroredDataset(annotations=local_json, images=images_root, source=annotations,
                           images_source=images_source, downloaded=mirror.downloaded, reused=mirror.reused,
                           bytes_downloaded=mirror.bytes)


def image_file_names(annotation_file: Path) -> list[str]:
    """Every distinct ``file_name`` of the JSON that can be fetched as a key (relative, no ``..``), in file order.
    Names that cannot are left for validate, which reports each one."""
    raw = read_coco(annotation_file)
    decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
    names: dict[str, None] = {}
    for record in raw.images:
        try:
            name = msgspec.json.decode(decoder.decode(record).get("file_name", b"null"))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(name, str) and "\\" not in name and is_safe_relative(name) and _is_key(name):
            names[name] = None
    return list(names)


class _Mirror:
    """One mirroring: the S3 stores it reads (one per bucket, one client), the index, the counts."""

    def __init__(self, destination: Path, client: Any, retry: RetryPolicy | None, workers: int,
                 progress: bool) -> None:
        self.destination = destination
        self.retry = retry or RetryPolicy()
        self.client = client or make_s3_client(retry=self.retry)
        self.workers = max(1, workers)
        self.progress = progress
        self.downloaded = self.reused = self.bytes = 0
        self._stores: dict[str, S3Store] = {}
        self._lock = threading.Lock()
        self._index = _read_index(destination / INDEX_NAME)
        self._unsaved = 0

    def store(self, bucket: str) -> S3Store:
        if bucket not in self._stores:
            self._stores[bucket] = S3Store(bucket, client=self.client, retry=self.retry)
        return self._stores[bucket]

    def local_path(self, bucket: str, key: str) -> Path:
        return self.destination / bucket / key if key else self.destination / bucket

    # -- what to fetch ------------------------------------------------------------------------------------------

    def fetch_annotations(self, url: str) -> Path:
        bucket, key = split_s3_url(url)
        if not _is_key(key):
            raise DatasetError("the annotation URL names no file", where=url,
                               fix="give the COCO JSON's full URL, e.g. s3://bucket/coco/annotations.json")
        store = self.store(bucket)
        head = store.head(key)
        if head is None:
            raise DatasetError("the annotation file does not exist in S3", where=url,
                               fix=f"check the URL (`aws s3 ls s3://{bucket}/{_parent(key)}`) and that the "
                                   "credentials reach the bucket it lives in")
        info = ObjectInfo(key, int(head["ContentLength"]), str(head.get("ETag", "")))
        self._fetch(store, [info], what="annotation file", source=url)
        return self.local_path(bucket, key)

    def images_location(self, annotations: str, images: str | None, names: list[str]) -> tuple[str, str]:
        """Bucket and prefix of the images: IMAGES when given, else found from the JSON's location."""
        if images is not None:
            bucket, prefix = split_s3_url(images)
            return bucket, normalize_key(prefix, allow_empty=True)
        bucket, json_key = split_s3_url(annotations)
        return bucket, self.choose_image_prefix(bucket, json_key, names)

    def choose_image_prefix(self, bucket: str, json_key: str, names: list[str]) -> str:
        """The candidate prefix holding most of the first names (the JSON's own prefix on a tie or when none has
        any: the missing images are then reported there)."""
        candidates = [_prefix(root) for root in candidate_image_roots(PurePosixPath(json_key))]
        sample = names[:SAMPLE_NAMES]
        store = self.store(bucket)
        best, best_hits = candidates[0], -1
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for prefix in candidates:
                keys = [join_key(prefix, name) for name in sample]
                hits = sum(head is not None for head in pool.map(store.head, keys))
                if hits > best_hits:
                    best, best_hits = prefix, hits
                if hits == len(sample):
                    break
        return best

    def fetch_images(self, bucket: str, prefix: str, names: list[str], annotations: str) -> None:
        if not names:
            return  # an annotation file without images: validate says so
        store = self.store(bucket)
        listed = {info.key: info for info in store.listing(prefix)}
        wanted = [(name, join_key(prefix, name)) for name in names]
        missing = [name for name, key in wanted if key not in listed]
        if missing:
            shown = ", ".join(store.url_for(join_key(prefix, name)) for name in missing[:MISSING_IMAGES_SHOWN])
            more = f" and {len(missing) - MISSING_IMAGES_SHOWN} more" if len(missing) > MISSING_IMAGES_SHOWN else ""
            raise DatasetError(
                f"{len(missing)} of {len(names)} images the annotation file names are not in S3: {shown}{more}",
                where=annotations,
                fix=f"upload them under {store.url_for(prefix)}/ (keys: <prefix>/<file_name>), pass "
                    "images=s3://<bucket>/<prefix> naming the folder that holds them, or remove them from the JSON")
        self._fetch(store, [listed[key] for _, key in wanted], what="images", source=store.url_for(prefix))

    # -- fetching -------------------------------------------------------------------------------------------------

    def _fetch(self, store: S3Store, objects: list[ObjectInfo], *, what: str, source: str) -> None:
        """Download the objects whose local copy is missing or older than S3's, several at a time."""
        stale = []
        for info in objects:
            if self._is_current(store.bucket, info):
                self.reused += 1
            else:
                stale.append(info)
        if not stale:
            return
        with tqdm(total=len(stale), desc=f"fetching {what}", unit="file", disable=not self.progress) as bar, \
                ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self._download, store, info) for info in stale]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()  # the ones already running finish (atomically) before the error goes up
                raise

    def _is_current(self, bucket: str, info: ObjectInfo) -> bool:
        """The index says this ETag and size were fetched, and the local file is as that fetch left it."""
        entry = self._index.get(f"{bucket}/{info.key}")
        if not entry or entry.get("etag") != info.etag or entry.get("size") != info.size:
            return False
        try:
            stat = self.local_path(bucket, info.key).stat()
        except OSError:
            return False
        return stat.st_size == info.size and stat.st_mtime_ns == entry.get("mtime_ns")

    def _download(self, store: S3Store, info: ObjectInfo) -> None:
        target = self.local_path(store.bucket, info.key)
        url = store.url_for(info.key)

        def download() -> dict[str, Any]:
            try:
                response = store.client.get_object(Bucket=store.bucket, Key=info.key)
            except ClientError as exc:
                if error_code(exc) in MISSING_KEY_CODES:
                    raise DatasetError("the object was deleted while the dataset was being fetched", where=url,
                                       fix="upload it again, or remove it from the annotation file") from None
                raise
            expected_size, recorded = int(response["ContentLength"]), response.get("Metadata", {}).get(SHA256_METADATA)
            body = response["Body"]
            with atomic_open(target, "wb") as out, body:  # `as` would bind the raw stream, not the StreamingBody
                sha, size = _copy_hashing(body.iter_chunks(CHUNK), out.write)
                if size != expected_size:
                    raise VerificationMismatch(f"{size} of {expected_size} bytes arrived")  # transient: tried again
                if recorded and sha != recorded:
                    raise StorageError(
                        f"the object's bytes do not match the sha256 it records ({sha[:12]}…, recorded "
                        f"{recorded[:12]}…)", where=url, fix="upload the file again (it was damaged or changed "
                                                            "without updating its x-amz-meta-sha256)")
            return {"etag": str(response.get("ETag", info.etag)), "size": size, "sha256": sha,
                    "mtime_ns": target.stat().st_mtime_ns}

        entry = store.attempt("download", info.key, download)
        with self._lock:
            self._index[f"{store.bucket}/{info.key}"] = entry
            self.downloaded += 1
            self.bytes += entry["size"]
            self._unsaved += 1
            if self._unsaved >= SAVE_EVERY:
                self._save_locked()

    # -- the index ------------------------------------------------------------------------------------------------

    def save_index(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        if self._unsaved:
            write_json_atomic(self.destination / INDEX_NAME, {"format": INDEX_FORMAT, "objects": self._index})
        self._unsaved = 0


def _read_index(path: Path) -> dict[str, dict[str, Any]]:
    """The objects a previous mirroring fetched; an unreadable index only means fetching them again."""
    try:
        data = json.loads(path.read_text())
        return dict(data["objects"]) if data.get("format") == INDEX_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _copy_hashing(chunks: Iterable[bytes], write: Callable[[bytes], Any]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _is_key(text: str) -> bool:
    try:
        normalize_key(text)
    except StorageError:
        return False
    return True


def _prefix(root: PurePosixPath) -> str:
    return "" if str(root) == "." else root.as_posix()


def _parent(key: str) -> str:
    parent = _prefix(PurePosixPath(key).parent)
    return f"{parent}/" if parent else ""


__all__ = ["INDEX_NAME", "MirroredDataset", "image_file_names", "mirror_coco_dataset"]
