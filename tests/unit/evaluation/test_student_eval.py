"""A student's mAP on a labelled split: boxes, masks for segmentation students, FastSAM class-agnostic."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_demo_dataset
from mlcore.errors import ConfigError
from mlcore.evaluation import evaluate_student
from mlcore.preprocess import PreprocessMeta
from mlcore.students import Student, StudentPrediction, get_student_model

CATEGORY_IDS = {"0": 1, "1": 2, "2": 3}  # the demo's square, circle, triangle
NAMES = ["square", "circle", "triangle"]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CocoDataset]:
    annotations = make_demo_dataset(tmp_path_factory.mktemp("demo"), mode="both", num_images=3,
                                    image_size=(96, 72), max_objects=2, negatives=0, seed=3)
    return annotations, CocoDataset(annotations)


def oracle(student: Student, dataset: CocoDataset, wrong_class: bool = False) -> None:
    """Make the student answer with each image's ground truth (in dataset order, as evaluate_student asks)."""
    samples: Iterator = iter(dataset[index] for index in range(len(dataset)))
    class_of = {category: int(index) for index, category in CATEGORY_IDS.items()}

    def predict_tensor(pixel_values: torch.Tensor, metas: Sequence[PreprocessMeta], **_: object
                       ) -> list[StudentPrediction]:
        out = []
        for _meta in metas:
            sample = next(samples)
            boxes = torch.from_numpy(sample.boxes).clone()
            boxes[:, 2:] += boxes[:, :2]
            classes = torch.tensor([class_of[int(c)] for c in sample.category_ids], dtype=torch.int64)
            if wrong_class:
                classes = (classes + 1) % 3
            masks = torch.from_numpy(sample.masks()).bool() if student.task == "segment" else None
            out.append(StudentPrediction(boxes=boxes, scores=torch.full((len(boxes),), 0.9), class_ids=classes,
                                         masks=masks, image_size=(sample.height, sample.width)))
        return out

    student.predict_tensor = predict_tensor  # type: ignore[method-assign]


@pytest.mark.parametrize("kind", ["yolov8", "yolov8_seg"])
def test_ground_truth_answers_score_one(split: tuple[Path, CocoDataset], kind: str) -> None:
    annotations, dataset = split
    student = get_student_model("detection_and_segmentation", class_names=NAMES, kind=kind)
    oracle(student, dataset)
    metrics = evaluate_student(student, dataset, annotations, CATEGORY_IDS, imgsz=64, batch_size=2)
    expected = {"map50_95": 1.0, "map50": 1.0}
    if kind == "yolov8_seg":
        expected.update(mask_map50_95=1.0, mask_map50=1.0)
    assert metrics == pytest.approx(expected)


def test_fastsam_is_measured_class_agnostically(split: tuple[Path, CocoDataset]) -> None:
    annotations, dataset = split
    student = get_student_model("segmentation_only", class_names=["shape"])
    oracle(student, dataset, wrong_class=True)
    metrics = evaluate_student(student, dataset, annotations, CATEGORY_IDS, imgsz=64)
    assert metrics == pytest.approx({"map50_95": 1.0, "map50": 1.0, "mask_map50_95": 1.0, "mask_map50": 1.0})


def test_classes_without_a_category_id_are_a_config_error(split: tuple[Path, CocoDataset]) -> None:
    annotations, dataset = split
    student = get_student_model("detection_only", class_names=NAMES)
    with pytest.raises(ConfigError, match=r"\[2\]"):
        evaluate_student(student, dataset, annotations, {"0": 1, "1": 2}, imgsz=64)
