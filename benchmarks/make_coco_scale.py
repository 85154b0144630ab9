"""Generate a synthetic, COCO-train2017-scale instances file for benchmarks: same shape, size and mix as the real one.

Deterministic for a given seed. Defaults match instances_train2017.json: 118,287 images, 860,001 annotations
(about 1% crowd RLE, the rest polygons), the 80 real categories with their real ids. Records are generated with
numpy in chunks and streamed to disk, so memory stays small whatever the scale.

    python benchmarks/make_coco_scale.py --output /tmp/coco_scale.json
    python benchmarks/make_coco_scale.py --images 11829 --annotations 86000 --output /tmp/coco_small.json
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np

FULL_IMAGES = 118_287
FULL_ANNOTATIONS = 860_001
CROWD_FRACTION = 0.0105  # train2017: 9,000-odd crowd annotations
NEGATIVE_FRACTION = 0.0086  # train2017: 1,021 images have no annotation
CHUNK = 20_000  # annotations generated and encoded at a time

# (id, name, supercategory, relative frequency): the real COCO ids (1..90 with gaps) and roughly their share of
# train2017's annotations (person alone is ~30%).
CATEGORIES = [
    (1, "person", "person", 262465), (2, "bicycle", "vehicle", 7113), (3, "car", "vehicle", 43867),
    (4, "motorcycle", "vehicle", 8725), (5, "airplane", "vehicle", 5135), (6, "bus", "vehicle", 6069),
    (7, "train", "vehicle", 4571), (8, "truck", "vehicle", 9973), (9, "boat", "vehicle", 10759),
    (10, "traffic light", "outdoor", 12884), (11, "fire hydrant", "outdoor", 1865), (13, "stop sign", "outdoor", 1983),
    (14, "parking meter", "outdoor", 1285), (15, "bench", "outdoor", 9838), (16, "bird", "animal", 10806),
    (17, "cat", "animal", 4768), (18, "dog", "animal", 5508), (19, "horse", "animal", 6587),
    (20, "sheep", "animal", 9509), (21, "cow", "animal", 8147), (22, "elephant", "animal", 5513),
    (23, "bear", "animal", 1294), (24, "zebra", "animal", 5303), (25, "giraffe", "animal", 5131),
    (27, "backpack", "accessory", 8720), (28, "umbrella", "accessory", 11431), (31, "handbag", "accessory", 12354),
    (32, "tie", "accessory", 6496), (33, "suitcase", "accessory", 6192), (34, "frisbee", "sports", 2682),
    (35, "skis", "sports", 6646), (36, "snowboard", "sports", 2685), (37, "sports ball", "sports", 6347),
    (38, "kite", "sports", 9076), (39, "baseball bat", "sports", 3276), (40, "baseball glove", "sports", 3747),
    (41, "skateboard", "sports", 5543), (42, "surfboard", "sports", 6126), (43, "tennis racket", "sports", 4812),
    (44, "bottle", "kitchen", 24342), (46, "wine glass", "kitchen", 7913), (47, "cup", "kitchen", 20650),
    (48, "fork", "kitchen", 5479), (49, "knife", "kitchen", 7770), (50, "spoon", "kitchen", 6165),
    (51, "bowl", "kitchen", 14358), (52, "banana", "food", 9458), (53, "apple", "food", 5851),
    (54, "sandwich", "food", 4373), (55, "orange", "food", 6399), (56, "broccoli", "food", 7308),
    (57, "carrot", "food", 7852), (58, "hot dog", "food", 2918), (59, "pizza", "food", 5821),
    (60, "donut", "food", 7179), (61, "cake", "food", 6353), (62, "chair", "furniture", 38491),
    (63, "couch", "furniture", 5779), (64, "potted plant", "furniture", 8652), (65, "bed", "furniture", 4192),
    (67, "dining table", "furniture", 15714), (70, "toilet", "furniture", 4157), (72, "tv", "electronic", 5805),
    (73, "laptop", "electronic", 4970), (74, "mouse", "electronic", 2262), (75, "remote", "electronic", 5703),
    (76, "keyboard", "electronic", 2855), (77, "cell phone", "electronic", 6434), (78, "microwave", "appliance", 1673),
    (79, "oven", "appliance", 3334), (80, "toaster", "appliance", 225), (81, "sink", "appliance", 5610),
    (82, "refrigerator", "appliance", 2637), (84, "book", "indoor", 24715), (85, "clock", "indoor", 6334),
    (86, "vase", "indoor", 6613), (87, "scissors", "indoor", 1481), (88, "teddy bear", "indoor", 4793),
    (89, "hair drier", "indoor", 198), (90, "toothbrush", "indoor", 1954),
]

LICENSES = [
    (1, "Attribution-NonCommercial-ShareAlike License", "http://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (2, "Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/"),
    (3, "Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
    (4, "Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    (5, "Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    (6, "Attribution-NoDerivs License", "http://creativecommons.org/licenses/by-nd/2.0/"),
    (7, "No known copyright restrictions", "http://flickr.com/commons/usage/"),
    (8, "United States Government Work", "http://www.usa.gov/copyright.shtml"),
]

# The commonest train2017 image sizes (width, height) and their rough shares; the rest are drawn below.
COMMON_SIZES = [((640, 480), 0.30), ((640, 427), 0.17), ((480, 640), 0.07), ((640, 426), 0.05), ((427, 640), 0.04),
                ((640, 428), 0.03), ((640, 425), 0.02), ((640, 424), 0.02), ((500, 375), 0.02), ((612, 612), 0.01),
                ((640, 640), 0.01), ((640, 360), 0.01)]

_encoder = msgspec.json.Encoder()


def generate(output: str | os.PathLike[str], *, images: int = FULL_IMAGES, annotations: int = FULL_ANNOTATIONS,
             seed: int = 0, masks_only: bool = False) -> dict[str, int]:
    """Write the file (atomically) and return its counts and size in bytes.

    masks_only leaves out every bbox and area: validation must then make and write all of them, its worst case.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image_ids, widths, heights = _image_table(rng, images)
    owner = _annotation_owners(rng, images, annotations)  # image index of each annotation, grouped by image
    crowd = rng.random(annotations) < CROWD_FRACTION
    ann_ids = np.sort(rng.choice(int(annotations * 2.6), size=annotations, replace=False) + 1)
    ann_ids[crowd] = 900_100_000_000 + np.flatnonzero(crowd)  # COCO numbers its crowd annotations apart
    weights = np.array([c[3] for c in CATEGORIES], dtype=np.float64)
    picked = rng.choice(len(CATEGORIES), annotations, p=weights / weights.sum())
    category_ids = np.array([c[0] for c in CATEGORIES])[picked]

    tmp = output.with_name(f".{output.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(b'{"info":' + _encoder.encode({
            "description": "Synthetic COCO-train2017-scale data for mlcore benchmarks", "url": "http://cocodataset.org",
            "version": "1.0", "year": 2017, "contributor": "mlcore benchmarks", "date_created": "2017/09/01",
        }))
        licenses = [{"url": url, "id": i, "name": name} for i, name, url in LICENSES]
        handle.write(b',"licenses":' + _encoder.encode(licenses))
        handle.write(b',"images":[')
        _write_chunks(handle, _image_chunks(rng, image_ids, widths, heights))
        handle.write(b'],"annotations":[')
        _write_chunks(handle, _annotation_chunks(rng, owner, crowd, ann_ids, category_ids, image_ids, widths, heights,
                                                 masks_only))
        handle.write(b'],"categories":' + _encoder.encode(
            [{"supercategory": sup, "id": i, "name": name} for i, name, sup, _ in CATEGORIES]) + b"}")
    os.replace(tmp, output)
    return {"images": images, "annotations": annotations, "crowd_annotations": int(crowd.sum()),
            "categories": len(CATEGORIES), "bytes": output.stat().st_size}


def _write_chunks(handle, chunks: Iterator[bytes]) -> None:
    """Each chunk is an encoded JSON list; join their insides with commas."""
    first = True
    for chunk in chunks:
        inner = chunk[1:-1]
        if not inner:
            continue
        if not first:
            handle.write(b",")
        handle.write(inner)
        first = False


def _image_table(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = rng.choice(581_929, size=count, replace=False) + 1  # train2017 ids are sparse in 1..581929
    sizes = np.array([s for s, _ in COMMON_SIZES])
    shares = np.array([p for _, p in COMMON_SIZES])
    common = rng.random(count) < shares.sum()
    picked = sizes[rng.choice(len(sizes), count, p=shares / shares.sum())]
    long_side = np.where(rng.random(count) < 0.9, 640, rng.integers(320, 640, count))
    short_side = np.minimum(rng.integers(240, 641, count), long_side)
    landscape = rng.random(count) < 0.75
    other = np.where(landscape[:, None], np.stack([long_side, short_side], 1), np.stack([short_side, long_side], 1))
    table = np.where(common[:, None], picked, other)
    return ids, table[:, 0], table[:, 1]


def _image_chunks(rng: np.random.Generator, ids: np.ndarray, widths: np.ndarray,
                  heights: np.ndarray) -> Iterator[bytes]:
    count = len(ids)
    licenses = rng.integers(1, 9, count)
    days, seconds = rng.integers(10, 29, count), rng.integers(0, 86_400, count)
    farms, servers = rng.integers(1, 10, count), rng.integers(1000, 9000, count)
    photos, secrets = rng.integers(10**9, 10**10, count), rng.integers(0, 16**10, count)
    for start in range(0, count, CHUNK):
        records = []
        for i in range(start, min(start + CHUNK, count)):
            name = f"{ids[i]:012d}.jpg"
            s = int(seconds[i])
            records.append({
                "license": int(licenses[i]), "file_name": name,
                "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "height": int(heights[i]), "width": int(widths[i]),
                "date_captured": f"2013-11-{days[i]:02d} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}",
                "flickr_url": f"http://farm{farms[i]}.staticflickr.com/{servers[i]}/"
                              f"{photos[i]}_{secrets[i]:010x}_z.jpg",
                "id": int(ids[i]),
            })
        yield _encoder.encode(records)


def _annotation_owners(rng: np.random.Generator, images: int, annotations: int) -> np.ndarray:
    """Which image each annotation belongs to: a long-tailed count per image (mean ~7.3), ~1% of images empty."""
    weights = rng.gamma(0.9, 1.0, images)
    weights[rng.random(images) < NEGATIVE_FRACTION] = 0.0
    annotated = np.flatnonzero(weights)[:annotations]  # one each first, so only the chosen few stay empty
    rest = rng.choice(images, size=annotations - len(annotated), p=weights / weights.sum())
    return np.sort(np.concatenate([annotated, rest]))


def _annotation_chunks(rng, owner, crowd, ann_ids, category_ids, image_ids, widths, heights,
                       masks_only: bool) -> Iterator[bytes]:
    for start in range(0, len(owner), CHUNK):
        stop = min(start + CHUNK, len(owner))
        index = np.arange(start, stop)
        is_crowd = crowd[start:stop]
        polygons = _polygons(rng, widths[owner[index[~is_crowd]]], heights[owner[index[~is_crowd]]])
        records = []
        for position, i in enumerate(index):
            if is_crowd[position]:
                segmentation, area, bbox = _crowd_rle(rng, int(widths[owner[i]]), int(heights[owner[i]]))
            else:
                segmentation, area, bbox = next(polygons)
            records.append({"segmentation": segmentation, "area": area, "iscrowd": int(is_crowd[position]),
                            "image_id": int(image_ids[owner[i]]), "bbox": bbox,
                            "category_id": int(category_ids[i]), "id": int(ann_ids[i])})
            if masks_only:
                del records[-1]["bbox"], records[-1]["area"]
        yield _encoder.encode(records)


def _polygons(rng: np.random.Generator, widths: np.ndarray, heights: np.ndarray) -> Iterator[tuple]:
    """(segmentation, area, bbox) per object: star-shaped polygons of 1-3 parts, 2-decimal coordinates in the image.

    Points per part follow a long-tailed law that grows with the object (COCO's small objects have a handful of
    points, large ones a hundred or more); bbox is the vertices' tight box and area the polygons' shoelace area,
    as in COCO's own files.
    """
    n = len(widths)
    w_img, h_img = widths.astype(np.float64), heights.astype(np.float64)
    scale = np.exp(rng.normal(np.log(60.0), 1.0, n))  # sqrt of box area: ~40% small, ~35% medium, ~25% large
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    box_w = np.clip(scale * np.sqrt(aspect), 2.0, w_img)
    box_h = np.clip(scale / np.sqrt(aspect), 2.0, h_img)
    box_x = rng.random(n) * (w_img - box_w)
    box_y = rng.random(n) * (h_img - box_h)

    parts_per = np.where(rng.random(n) < 0.9, 1, rng.integers(2, 4, n))
    part_owner = np.repeat(np.arange(n), parts_per)
    parts = len(part_owner)
    first_part = np.concatenate([[0], np.cumsum(parts_per)[:-1]])
    single = (parts_per == 1)[part_owner]
    # A lone part fills the object's box; several parts are smaller pieces of it.
    frac_w = np.where(single, 1.0, rng.uniform(0.3, 0.7, parts))
    frac_h = np.where(single, 1.0, rng.uniform(0.3, 0.7, parts))
    pw, ph = box_w[part_owner] * frac_w, box_h[part_owner] * frac_h
    px = box_x[part_owner] + rng.random(parts) * (box_w[part_owner] - pw)
    py = box_y[part_owner] + rng.random(parts) * (box_h[part_owner] - ph)
    median_points = 5.5 + 0.17 * np.sqrt(pw * ph)
    points = np.clip(np.rint(np.exp(rng.normal(np.log(median_points), 0.5))), 3, 600).astype(np.int64)

    point_part = np.repeat(np.arange(parts), points)
    part_start = np.concatenate([[0], np.cumsum(points)[:-1]])
    # Angles: sorted, irregular steps around the centre; radii jitter gives a ragged, object-like outline.
    steps = np.cumsum(rng.uniform(0.3, 1.0, len(point_part)))
    before = np.concatenate([[0.0], steps])[part_start]
    total = steps[part_start + points - 1] - before
    angle = 2 * np.pi * (steps - before[point_part]) / total[point_part] + rng.uniform(0, 2 * np.pi, parts)[point_part]
    radius = rng.uniform(0.65, 1.0, len(point_part))
    cx, cy = (px + pw / 2)[point_part], (py + ph / 2)[point_part]
    xs = np.round(np.clip(cx + pw[point_part] / 2 * radius * np.cos(angle), 0, w_img[part_owner][point_part]), 2)
    ys = np.round(np.clip(cy + ph[point_part] / 2 * radius * np.sin(angle), 0, h_img[part_owner][point_part]), 2)

    following = np.arange(1, len(xs) + 1)
    following[part_start + points - 1] = part_start
    part_area = np.abs(np.add.reduceat(xs * ys[following] - xs[following] * ys, part_start)) / 2
    area = np.add.reduceat(part_area, first_part)
    ann_start = part_start[first_part]
    x0, x1 = np.minimum.reduceat(xs, ann_start), np.maximum.reduceat(xs, ann_start)
    y0, y1 = np.minimum.reduceat(ys, ann_start), np.maximum.reduceat(ys, ann_start)
    bbox = np.round(np.stack([x0, y0, x1 - x0, y1 - y0], 1), 2).tolist()

    flat = np.stack([xs, ys], 1).ravel().tolist()
    bounds = (2 * np.concatenate([part_start, [len(xs)]])).tolist()
    area, first_part, parts_per = area.tolist(), first_part.tolist(), parts_per.tolist()
    for i in range(n):
        p0 = first_part[i]
        segmentation = [flat[bounds[p]:bounds[p + 1]] for p in range(p0, p0 + parts_per[i])]
        yield segmentation, area[i], bbox[i]


def _crowd_rle(rng: np.random.Generator, width: int, height: int) -> tuple[dict, float, list[float]]:
    """An uncompressed RLE blob (column-major runs summing to height*width), its pixel area and tight box."""
    cols = int(rng.integers(max(2, width // 8), max(3, width * 2 // 3)))
    x0 = int(rng.integers(0, width - cols + 1))
    span = int(rng.integers(max(2, height // 8), max(3, height * 2 // 3)))
    y_top = int(rng.integers(0, height - span + 1))
    wobble = np.cumsum(rng.integers(-2, 3, (cols, 2)), axis=0)
    top = np.clip(y_top + span // 4 + wobble[:, 0], 0, height - 2)
    bottom = np.clip(y_top + span - span // 4 + wobble[:, 1], top + 1, height)
    runs = np.empty(2 * cols + 1, dtype=np.int64)
    runs[0] = x0 * height + top[0]
    runs[1:-1:2] = bottom - top
    runs[2:-1:2] = height - bottom[:-1] + top[1:]
    runs[-1] = height - bottom[-1] + (width - x0 - cols) * height
    box = [float(x0), float(top.min()), float(cols), float(bottom.max() - top.min())]
    return {"counts": runs.tolist(), "size": [height, width]}, float((bottom - top).sum()), box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=FULL_IMAGES, help="number of images (train2017: 118,287)")
    parser.add_argument("--annotations", type=int, default=FULL_ANNOTATIONS,
                        help="number of annotations (train2017: 860,001)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same file")
    parser.add_argument("--output", type=Path, required=True, help="where to write the JSON file")
    parser.add_argument("--masks-only", action="store_true", help="no bbox/area: validation's worst case")
    args = parser.parse_args()
    started = time.perf_counter()
    counts = generate(args.output, images=args.images, annotations=args.annotations, seed=args.seed,
                      masks_only=args.masks_only)
    print(f"wrote {args.output}: {counts['images']:,} images, {counts['annotations']:,} annotations "
          f"({counts['crowd_annotations']:,} crowd), {counts['bytes'] / 1e6:,.1f} MB "
          f"({counts['bytes'] / 2**20:,.1f} MiB) "
          f"in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
