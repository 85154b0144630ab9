"""Which categories become classes: repeated names resolved by use, exporters' placeholders recognised, and unused
categories reported in one finding that says what happened to their annotations.

Runs after the annotations are checked, because only then is it known which category ids are used.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from mlcore.data.coco_schema import CocoCategory
from mlcore.data.findings import FindingGroup, Severity
from mlcore.data.validation import ValidatedCoco

# labelme2coco writes `_background_` as category 0; no annotation ever uses it.
BACKGROUND_NAMES = {"_background_", "__background__"}


def resolve_repeated_names(data: ValidatedCoco) -> None:
    """Roboflow writes the project name as an unused category 0; when a class has the same name, the unused one is
    dropped with a note. Two used categories sharing a name stay an error: which one is meant cannot be guessed."""
    referenced = _referenced(data)
    by_name: dict[str, list[CocoCategory]] = defaultdict(list)
    for category in data.categories:
        by_name[category.name.strip().lower()].append(category)
    dropped: set[int] = set()
    for group in by_name.values():
        if len(group) < 2:
            continue
        in_use = [category for category in group if referenced[category.id]]
        if len(in_use) > 1:
            listed = ", ".join(f"categories[{data.category_positions[c.id]}] id {c.id} ({referenced[c.id]} "
                               "annotations)" for c in in_use)
            data.findings.error("duplicate_category_name", f"categories[{data.category_positions[in_use[1].id]}].name",
                                f"category name '{group[0].name}' is used by several categories: {listed}",
                                "rename one, or merge the categories (and their annotations) into one id")
            continue
        keep = in_use[0] if in_use else group[0]
        for category in group:
            if category is keep:
                continue
            dropped.add(category.id)
            data.findings.info("duplicate_category_dropped", f"categories[{data.category_positions[category.id]}]",
                               f"category '{category.name}' (id {category.id}) repeats the name of id {keep.id} and "
                               "no annotation uses it (Roboflow writes the project's name as an unused category 0); "
                               "left out", "nothing to do")
    _remove(data, dropped)


def class_categories(data: ValidatedCoco, keep_empty: bool) -> list[CocoCategory]:
    """Categories that become classes, in category-id order; unused ones are reported and, by default, left out."""
    used = {ann.category_id for ann in data.annotations if not ann.iscrowd}
    crowd_only = {ann.category_id for ann in data.annotations if ann.iscrowd} - used
    supercategories_of_used = {c.supercategory for c in data.categories if c.id in used}
    dropped_by_category: dict[int, Counter[str]] = defaultdict(Counter)
    for (category_id, reason), count in data.dropped.items():
        dropped_by_category[category_id][reason] += count
    unused = FindingGroup(
        Severity.INFO if keep_empty else Severity.WARNING, "category_unused",
        "categories have no usable annotation" + ("; kept as classes (--keep-empty-classes)" if keep_empty
                                                  else "; left out of the class mapping"),
        "annotate objects of them, or remove them" if keep_empty
        else "annotate objects of them, remove them, or pass --keep-empty-classes to keep them as classes",
        "categories")
    classes = []
    for category in sorted(data.categories, key=lambda c: c.id):
        path = f"categories[{data.category_positions[category.id]}]"
        if category.id in used:
            classes.append(category)
            continue
        placeholder = _placeholder(category, supercategories_of_used, dropped_by_category[category.id])
        if placeholder:
            data.findings.info("placeholder_category", path, f"category '{category.name}' (id {category.id}) is "
                               f"{placeholder} and no annotation uses it; left out", "nothing to do")
            continue
        if keep_empty:
            classes.append(category)
        unused.add(path, f"category '{category.name}' (id {category.id}) "
                   + _why_unused(category.id in crowd_only, dropped_by_category[category.id]))
    unused.emit(data.findings)
    return classes


def _why_unused(crowd_only: bool, dropped: Counter[str]) -> str:
    if dropped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.most_common())
        return f"has no usable annotation: its {sum(dropped.values())} annotation(s) were dropped ({reasons})"
    if crowd_only:
        return "has only crowd regions (iscrowd=1), which train nothing"
    return "has no annotation"


def _placeholder(category: CocoCategory, supercategories_of_used: set[str | None], dropped: Counter[str]) -> str:
    """Why an unused category is an exporter's placeholder rather than a class someone forgot, or ''."""
    if dropped:
        return ""
    if category.name.strip().lower() in BACKGROUND_NAMES:
        return "labelme2coco's background placeholder"
    if supercategories_of_used == {category.name}:
        return "the Roboflow project's placeholder (the supercategory of every class in use)"
    return ""


def _referenced(data: ValidatedCoco) -> Counter[int]:
    """Annotations naming each category id, kept or dropped."""
    counts = Counter(ann.category_id for ann in data.annotations)
    for (category_id, _), count in data.dropped.items():
        counts[category_id] += count
    return counts


def _remove(data: ValidatedCoco, ids: set[int]) -> None:
    if not ids:
        return
    kept = [(c, r) for c, r in zip(data.categories, data.category_records) if c.id not in ids]
    data.categories = [c for c, _ in kept]
    data.category_records = [r for _, r in kept]
