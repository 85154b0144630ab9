"""What fine-tuning cost where the user did not train: untrained classes, and prompts outside the user's classes.

Two checks, both written to each teacher's `forgetting` entry in metrics.json:

- untrained classes: classes the val split has and the training split never shows (DINO: boxes; SAM: masks). Their
  per-class score before and after fine-tuning; a drop is forgetting, nothing was there to learn.
- control prompts (Grounding DINO): generic names that are not the user's classes, prompted on a few val images.
  The base model's confident detections (`with model.disable_adapter()`: no reload) are the reference; the adapted
  model's detections for the same prompts are scored against them with COCO mAP50. 1.0: it still answers those
  prompts as the base did; lower: fine-tuning changed its behaviour on concepts it never trained.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from mlcore.config.schemas.teachers import GroundingDinoForgetting
from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.objects import sample_objects
from mlcore.finetune.evaluation import coco_box_evaluation, coco_results
from mlcore.teachers.grounding_dino import Detections
from mlcore.teachers.prompts import PromptChunk

Detect = Callable[[Sequence[PromptChunk], Sequence[int]], list[tuple[int, Detections]]]


def class_counts(dataset: CocoDataset, class_of_category: Mapping[int, int], *, masks: bool = False) -> Counter:
    """Objects per class index (non-crowd, known classes; with masks=True only those that have a mask)."""
    counts: Counter = Counter()
    for index in range(len(dataset)):
        objects = sample_objects(dataset[index], class_of_category)
        class_ids = objects.class_ids[objects.has_mask] if masks else objects.class_ids
        counts.update(int(c) for c in class_ids.tolist())
    return counts


def per_class_scores(before: Mapping[int, float | None], after: Mapping[int, float | None],
                     class_names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """{class name: {before, after, change}} for every class scored on either side (None: no val objects)."""
    table = {}
    for class_id in sorted(set(before) | set(after)):
        old, new = before.get(class_id), after.get(class_id)
        table[class_names[class_id]] = {"before": old, "after": new,
                                        "change": None if old is None or new is None else new - old}
    return table


def untrained_class_report(scores: dict[str, dict[str, float | None]], train: Counter, val: Counter,
                           class_names: Sequence[str], metric: str) -> dict:
    """The per-class rows of classes present in val and absent from training, with their mean change."""
    untrained = [class_names[c] for c in sorted(val) if val[c] and not train.get(c)]
    rows = {name: scores.get(name, {"before": None, "after": None, "change": None}) for name in untrained}
    changes = [row["change"] for row in rows.values() if row["change"] is not None]
    return {"metric": metric, "classes": rows, "mean_change": sum(changes) / len(changes) if changes else None}


def control_prompt_report(detect_base: Detect, detect_adapted: Detect, dataset: CocoDataset,
                          chunks: Sequence[PromptChunk], names: Sequence[str],
                          settings: GroundingDinoForgetting) -> dict:
    """mAP50 of the adapted model's control-prompt detections against the base model's (see the module doc)."""
    indices = list(range(min(settings.max_images, len(dataset))))
    report: dict = {"metric": "map50_against_base", "prompts": list(names), "images": len(indices),
                    "score_threshold": settings.score_threshold, "value": None, "per_prompt": {},
                    "reference_detections": 0}
    if not names or not indices:
        report["note"] = "no control prompts" if not names else "no val images"
        return report
    reference = detect_base(chunks, indices)
    images = [{"id": dataset[i].image_id, "width": dataset[i].width, "height": dataset[i].height} for i in indices]
    annotations = []
    for index, found in reference:
        for (x1, y1, x2, y2), score, class_id in zip(found.boxes.tolist(), found.scores.tolist(),
                                                     found.class_ids.tolist()):
            if score >= settings.score_threshold:
                annotations.append({"id": len(annotations) + 1, "image_id": dataset[index].image_id,
                                    "category_id": int(class_id) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    report["reference_detections"] = len(annotations)
    if not annotations:
        report["note"] = (f"the base model found nothing at score >= {settings.score_threshold} for these prompts on "
                          "these images: nothing to compare (lower forgetting.score_threshold to measure it)")
        return report
    truth = {"images": images, "annotations": annotations,
             "categories": [{"id": c + 1, "name": name} for c, name in enumerate(names)]}
    category_of_class = {c: c + 1 for c in range(len(names))}
    adapted = coco_results(dataset, detect_adapted(chunks, indices), category_of_class)
    evaluation = coco_box_evaluation(truth, adapted, category_of_class)
    report["value"] = evaluation.metrics["map50"]
    report["per_prompt"] = {names[c]: ap for c, ap in evaluation.per_class_ap50.items() if ap is not None}
    return report


def control_prompt_names(settings: GroundingDinoForgetting, class_names: Sequence[str],
                         class_prompts: Mapping[str, Sequence[str]]) -> list[str]:
    """The configured control prompts minus anything the user trains (class names and their synonyms)."""
    taken = {name.strip().lower() for name in class_names}
    taken |= {phrase.strip().lower() for phrases in class_prompts.values() for phrase in phrases}
    return [name for name in dict.fromkeys(settings.control_prompts) if name.strip().lower() not in taken]
