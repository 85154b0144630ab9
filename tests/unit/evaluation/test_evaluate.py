"""Evaluating engines, results files and the teacher: pycocotools' numbers, mode-aware masks, files written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.errors import ConfigError, DatasetError
from mlcore.evaluation import (EvaluationResult, evaluate_engine, evaluate_results_file, evaluate_student,
                               evaluate_teacher, write_evaluation)
from mlcore.optimization import export_to_onnx
from mlcore.preprocess import PreprocessMeta
from mlcore.students import Student, StudentPrediction, get_student_model
from tests.unit.evaluation.conftest import CATEGORY_IDS, NAMES, noisy_results, read_json, self_labelled
from tests.unit.evaluation.test_curves import PNG_MAGIC
from tests.unit.evaluation.test_metrics import direct_stats
from tests.unit.live_student import image_dependent


class StudentStandIn:
    """The engine protocol around a real Student (what mlcore.inference's PyTorchEngine does)."""

    def __init__(self, student: Student, imgsz: int = 64, multi_label: bool = True) -> None:
        self.student, self.imgsz, self.multi_label = student, imgsz, multi_label
        self.class_names, self.task, self.name = student.class_names, student.task, "stand-in"

    def predict_batch(self, pixel_values: torch.Tensor, metas: Sequence[PreprocessMeta], *, conf: float,
                      iou: float, max_det: int, multi_label: bool = False) -> list[StudentPrediction]:
        assert multi_label == self.multi_label  # evaluation asks for it where the engine takes it
        return self.student.predict_tensor(pixel_values, metas, conf=conf, iou=iou, max_det=max_det,
                                           multi_label=multi_label)


class GroundTruthEngine:
    """Answers with each image's ground truth (in dataset order), in the original frame: scores must be 1."""

    imgsz, task, name = 64, "segment", "oracle"

    def __init__(self, dataset: CocoDataset, class_names: list[str]) -> None:
        self.class_names = class_names
        self.samples = iter(dataset[index] for index in range(len(dataset)))

    def predict_batch(self, pixel_values: torch.Tensor, metas: Sequence[PreprocessMeta], *, conf: float,
                      iou: float, max_det: int) -> list[StudentPrediction]:
        assert pixel_values.shape[1:] == (3, 64, 64)
        out = []
        for meta in metas:
            sample = next(self.samples)
            assert meta.original_size == (sample.height, sample.width)
            boxes = torch.from_numpy(sample.boxes).clone()
            boxes[:, 2:] += boxes[:, :2]
            classes = torch.tensor([int(c) - 1 for c in sample.category_ids], dtype=torch.int64)
            out.append(StudentPrediction(boxes=boxes, scores=torch.full((len(boxes),), 0.9), class_ids=classes,
                                         masks=torch.from_numpy(sample.masks()).bool(),
                                         image_size=(sample.height, sample.width)))
        return out


@pytest.fixture(scope="module")
def seg_student(demo_split: tuple[Path, CocoDataset]) -> Student:
    _, dataset = demo_split
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = get_student_model("detection_and_segmentation", class_names=NAMES, kind="yolov8_seg")
    return image_dependent(student, [dataset[index].image_path for index in range(len(dataset))])


@pytest.fixture(scope="module")
def own_labels(demo_split: tuple[Path, CocoDataset], seg_student: Student,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo images labelled with some of the student's own predictions: it scores strictly inside (0, 1)."""
    annotation_file, dataset = demo_split
    predicted = evaluate_engine(StudentStandIn(seg_student), dataset, annotation_file, CATEGORY_IDS, batch_size=2)
    labels = self_labelled(annotation_file, predicted.results, tmp_path_factory.mktemp("own") / "labels.json")
    assert read_json(labels)["annotations"]
    return labels


def strictly_inside(metrics: dict[str, float]) -> bool:
    """Every number away from 0 and 1, where two different sets of predictions could not tie by accident."""
    return all(0.05 < value < 0.95 for value in metrics.values())


def same_predictions(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same detections, up to float32 rounding: ids and classes equal, boxes to 0.02 px (records hold two
    decimals), scores to 1e-5 (ONNX Runtime and PyTorch differ by ~1e-6)."""
    def ordered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(records, key=lambda record: (record["image_id"], record["category_id"], record["bbox"]))

    assert len(got) == len(want) > 0
    for a, b in zip(ordered(got), ordered(want)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=0.02) and a["score"] == pytest.approx(b["score"], abs=1e-5)


def write_results(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("keys", [("bbox",), ("segmentation",), ("bbox", "segmentation")])
def test_results_file_numbers_equal_pycocotools_on_the_same_files(demo_split: tuple[Path, CocoDataset],
                                                                  tmp_path: Path, keys: tuple[str, ...]) -> None:
    annotation_file, _ = demo_split
    records = [{k: v for k, v in r.items() if k in ("image_id", "category_id", "score", *keys)}
               for r in noisy_results(read_json(annotation_file), seed=4)]
    results_file = write_results(tmp_path / "results.json", records)
    result = evaluate_results_file(results_file, annotation_file)
    if "bbox" in keys:
        assert result.scores.bbox.stats == pytest.approx(direct_stats(annotation_file, results_file, "bbox"),
                                                         abs=1e-12)
    if keys == ("segmentation",):
        assert result.scores.segm.stats == pytest.approx(direct_stats(annotation_file, results_file, "segm"),
                                                         abs=1e-12)
    if "segmentation" in keys:
        # pycocotools takes a record's box area for both types when it has a box: only the size-range rows move.
        assert result.scores.segm.stats[:3] == pytest.approx(
            direct_stats(annotation_file, results_file, "segm")[:3], abs=1e-12)
    else:
        assert result.scores.segm is None
    assert result.num_images == 5 and result.name == "results"


def test_bad_results_files_are_dataset_errors(demo_split: tuple[Path, CocoDataset], tmp_path: Path) -> None:
    annotation_file, _ = demo_split
    with pytest.raises(DatasetError, match="not in the annotation file"):
        evaluate_results_file(write_results(tmp_path / "a.json", [
            {"image_id": 999, "category_id": 1, "score": 0.5, "bbox": [0, 0, 4, 4]}]), annotation_file)
    with pytest.raises(DatasetError, match="JSON list"):
        evaluate_results_file(write_results(tmp_path / "b.json", {"annotations": []}), annotation_file)
    with pytest.raises(DatasetError, match="needs image_id"):
        evaluate_results_file(write_results(tmp_path / "c.json", [{"image_id": 1}]), annotation_file)
    with pytest.raises(DatasetError, match="not found"):
        evaluate_results_file(tmp_path / "missing.json", annotation_file)


def test_an_engine_answering_the_ground_truth_scores_one(demo_split: tuple[Path, CocoDataset]) -> None:
    annotation_file, dataset = demo_split
    result = evaluate_engine(GroundTruthEngine(dataset, NAMES), dataset, annotation_file, CATEGORY_IDS, batch_size=2)
    assert result.metrics() == pytest.approx({"map50_95": 1.0, "map50": 1.0, "map75": 1.0, "mask_map50_95": 1.0,
                                              "mask_map50": 1.0, "mask_map75": 1.0})
    assert set(result.per_class) == set(NAMES)
    # no category_ids: the class names are matched to the file's categories
    by_name = evaluate_engine(GroundTruthEngine(dataset, NAMES), dataset, annotation_file)
    assert by_name.metrics() == result.metrics()


def test_engine_evaluation_equals_the_students_own(demo_split: tuple[Path, CocoDataset], seg_student: Student,
                                                   own_labels: Path) -> None:
    _, dataset = demo_split
    result = evaluate_engine(StudentStandIn(seg_student), dataset, own_labels, CATEGORY_IDS, batch_size=2)
    assert isinstance(result, EvaluationResult) and result.mask_map50_95 is not None
    expected = evaluate_student(seg_student, dataset, own_labels, CATEGORY_IDS, imgsz=64, batch_size=2)
    assert set(expected) == {"map50_95", "map50", "mask_map50_95", "mask_map50"} and strictly_inside(expected)
    assert {key: value for key, value in result.metrics().items() if "75" not in key} == pytest.approx(expected)
    assert result.results and all("segmentation" in record for record in result.results)


def test_detectors_and_box_only_ground_truth_get_no_mask_scores(demo_split: tuple[Path, CocoDataset],
                                                                tmp_path: Path, seg_student: Student) -> None:
    annotation_file, dataset = demo_split
    detector = get_student_model("detection_only", class_names=NAMES)
    result = evaluate_engine(StudentStandIn(detector), dataset, annotation_file, CATEGORY_IDS)
    assert result.mask_map50_95 is None and "mask_map50" not in result.metrics()
    data = read_json(annotation_file)
    boxes_only = write_results(tmp_path / "boxes_only.json",
                               {**data, "annotations": [{**a, "segmentation": []} for a in data["annotations"]]})
    result = evaluate_engine(StudentStandIn(seg_student), dataset, boxes_only, CATEGORY_IDS)
    assert result.mask_map50_95 is None


def test_missing_category_ids_are_config_errors(demo_split: tuple[Path, CocoDataset], seg_student: Student) -> None:
    annotation_file, dataset = demo_split
    with pytest.raises(ConfigError, match=r"\[2\]"):
        evaluate_engine(StudentStandIn(seg_student), dataset, annotation_file, {"0": 1, "1": 2})
    other = get_student_model("detection_only", class_names=["cat", "dog"])
    with pytest.raises(ConfigError, match="not categories of the annotation file"):
        evaluate_engine(StudentStandIn(other), dataset, annotation_file)


def test_write_evaluation_files_round_trip(demo_split: tuple[Path, CocoDataset], seg_student: Student,
                                           own_labels: Path, tmp_path: Path) -> None:
    _, dataset = demo_split
    annotation_file = own_labels
    result = evaluate_engine(StudentStandIn(seg_student), dataset, annotation_file, CATEGORY_IDS)
    assert strictly_inside(result.metrics())
    written = write_evaluation(result, tmp_path / "eval")
    assert set(written) == {"metrics", "pr_curves", "pr_curve_bbox", "pr_curve_segm", "predictions"}
    metrics = read_json(written["metrics"])
    assert metrics["map50_95"] == pytest.approx(result.map50_95, abs=1e-6)
    assert {"mask_map50_95", "settings", "bbox", "segm", "num_images"} <= set(metrics)
    assert set(metrics["bbox"]["per_class"]) == set(NAMES)
    assert set(metrics["per_class"]["square"]) == {"ap50_95", "ap50", "mask_ap50_95", "mask_ap50"}
    for key in ("pr_curve_bbox", "pr_curve_segm"):
        assert written[key].read_bytes()[:8] == PNG_MAGIC
    again = evaluate_results_file(written["predictions"], annotation_file, CATEGORY_IDS)
    assert again.metrics() == pytest.approx(result.metrics())


def test_real_engines_agree(demo_split: tuple[Path, CocoDataset], seg_student: Student, own_labels: Path,
                            tmp_path: Path) -> None:
    """mlcore.inference's PyTorch and ONNX engines through the same evaluation: the same detections within float
    noise, so the same numbers."""
    from mlcore import inference

    _, dataset = demo_split
    stand_in = evaluate_engine(StudentStandIn(seg_student), dataset, own_labels, CATEGORY_IDS)
    torch_result = evaluate_engine(inference.PyTorchEngine(seg_student, imgsz=64), dataset, own_labels, CATEGORY_IDS)
    same_predictions(torch_result.results, stand_in.results)
    assert strictly_inside(torch_result.metrics()) and torch_result.metrics() == pytest.approx(stand_in.metrics())
    onnx_path = export_to_onnx(seg_student, tmp_path / "student.onnx", imgsz=64, dynamic_batch=False).path
    onnx_result = evaluate_engine(inference.load_engine(onnx_path, device="cpu"), dataset, own_labels,
                                  CATEGORY_IDS, batch_size=3)
    same_predictions(onnx_result.results, torch_result.results)
    assert onnx_result.metrics() == pytest.approx(torch_result.metrics())
    assert onnx_result.settings["imgsz"] == 64


def test_teacher_scores_boxes_and_masks(demo_split: tuple[Path, CocoDataset]) -> None:
    from mlcore.teachers import GroundedSAM, load_grounding_dino, load_sam

    annotation_file, dataset = demo_split
    with torch.random.fork_rng():
        torch.manual_seed(0)
        grounded = GroundedSAM(NAMES, grounding_dino=load_grounding_dino("tiny"), sam=load_sam("tiny"))
    result = evaluate_teacher(grounded, dataset, annotation_file, CATEGORY_IDS, max_det=20)
    assert result.mask_map50_95 is not None and result.settings["prompted_with"] == "grounding_dino"
    assert all(0.0 <= value <= 1.0 for value in result.metrics().values())
    assert grounded.box_threshold == 0.35  # the teacher's own settings are left alone
    per_image: dict[int, int] = {}
    for record in result.results:
        per_image[record["image_id"]] = per_image.get(record["image_id"], 0) + 1
        assert "segmentation" in record
    assert per_image and max(per_image.values()) <= 20
    # SAM alone (segmentation_only) is prompted with the true boxes: boxes are exact, masks are SAM's
    sam_only = GroundedSAM(NAMES, sam=grounded.sam)
    prompted = evaluate_teacher(sam_only, dataset, annotation_file)
    assert prompted.settings["prompted_with"] == "ground-truth boxes"
    assert prompted.map50_95 == pytest.approx(1.0) and 0.0 <= prompted.mask_map50_95 <= 1.0
    data = read_json(annotation_file)
    boxes_only = {**data, "annotations": [{**a, "segmentation": []} for a in data["annotations"]]}
    with pytest.raises(ConfigError, match="nothing to measure"):
        evaluate_teacher(sam_only, dataset, boxes_only)
