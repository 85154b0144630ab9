"""The prompt-free contract: images in, original-frame detections out; checkpoints ultralytics itself loads."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from mlcore.errors import ConfigError, ModelError
from mlcore.students import Student, StudentPrediction
from tests.unit.students.conftest import noise_image

KINDS = ["yolov8", "yolov8_seg", "fastsam"]


def test_predict_takes_images_and_settings_only() -> None:
    parameters = inspect.signature(Student.predict).parameters
    assert list(parameters) == ["self", "images", "imgsz", "conf", "iou", "max_det"]
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in ("imgsz", "conf", "iou", "max_det"))
    assert not {"prompt", "prompts", "text", "classes", "boxes", "points"} & set(parameters)


@pytest.mark.parametrize("kind", KINDS)
def test_predictions_lie_in_each_original_image(make_student: Callable[..., Student], kind: str) -> None:
    student = make_student(kind)
    images = [noise_image(60, 100, seed=1), noise_image(120, 72, seed=2)]
    predictions = student.predict(images, imgsz=96, conf=0.0, max_det=50)
    assert len(predictions) == 2
    for prediction, image in zip(predictions, images):
        height, width = image.shape[:2]
        assert isinstance(prediction, StudentPrediction) and prediction.image_size == (height, width)
        assert 0 < len(prediction) <= 50
        boxes = prediction.boxes
        assert boxes.dtype == torch.float32 and boxes.shape == (len(prediction), 4)
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= width).all()
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= height).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        assert prediction.scores.dtype == torch.float32 and prediction.class_ids.dtype == torch.int64
        assert ((prediction.class_ids >= 0) & (prediction.class_ids < student.num_classes)).all()
        if student.task == "segment":
            assert prediction.masks is not None and prediction.masks.dtype == torch.bool
            assert prediction.masks.shape == (len(prediction), height, width)
            assert prediction.masks.flatten(1).any(1).all()
        else:
            assert prediction.masks is None


def test_one_image_in_any_form_gives_a_list_of_one(make_student: Callable[..., Student], tmp_path: Path) -> None:
    student = make_student("yolov8_seg")
    image = noise_image(64, 80)
    Image.fromarray(image).save(tmp_path / "image.png")
    results = [student.predict(form, imgsz=64, conf=0.0) for form in (image, Image.fromarray(image),
                                                                       tmp_path / "image.png", [image])]
    assert all(len(result) == 1 for result in results)
    for other in results[1:]:
        assert torch.equal(other[0].boxes, results[0][0].boxes) and torch.equal(other[0].masks, results[0][0].masks)


def test_predict_tensor_leaves_each_modules_mode_alone(make_student: Callable[..., Student]) -> None:
    student = make_student("yolov8")
    student.model.train()
    frozen = student.model.model[0].bn.eval()
    batch = student.preprocessor(64)([noise_image(64, 64)])
    student.predict_tensor(batch.pixel_values, batch.meta)
    assert student.model.training and not frozen.training


def test_imgsz_must_be_a_multiple_of_the_stride(make_student: Callable[..., Student]) -> None:
    with pytest.raises(ConfigError, match="stride"):
        make_student("yolov8").predict(noise_image(32, 32), imgsz=100)


@pytest.mark.parametrize("kind", KINDS)
def test_ultralytics_loads_the_saved_checkpoint_with_task_and_names(make_student: Callable[..., Student],
                                                                    tmp_path: Path, kind: str) -> None:
    import ultralytics

    student = make_student(kind)
    path = student.save(tmp_path / "student.pt", extra={"mode": "x"}, imgsz=64)
    model = ultralytics.FastSAM(str(path)) if kind == "fastsam" else ultralytics.YOLO(str(path))
    assert model.task == student.task
    assert model.names == dict(enumerate(student.class_names))
    results = model.predict(noise_image(48, 64), imgsz=64, conf=0.0, device="cpu", verbose=False)
    assert len(results) == 1 and results[0].orig_shape == (48, 64)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["mlcore"]["extra"] == {"mode": "x"} and checkpoint["train_args"]["imgsz"] == 64
    assert checkpoint["model"].model[0].conv.weight.dtype == torch.float16 and checkpoint["optimizer"] is None


@pytest.mark.parametrize("kind", ["yolov8", "fastsam"])
def test_save_load_round_trip_predicts_identically(make_student: Callable[..., Student], tmp_path: Path,
                                                   kind: str) -> None:
    student = make_student(kind)
    student.model.half().float()  # checkpoints hold fp16 weights, as ultralytics' do
    student.extra = {"class_mapping": {"0": "cat"}}
    loaded = Student.load(student.save(tmp_path / "student.pt"))
    assert (loaded.kind, loaded.size, loaded.class_names, loaded.extra) == (
        student.kind, student.size, student.class_names, student.extra)
    images = [noise_image(70, 90, seed=3)]
    before, after = student.predict(images, imgsz=64, conf=0.0), loaded.predict(images, imgsz=64, conf=0.0)
    for name in ("boxes", "scores", "class_ids", "masks"):
        first, second = getattr(before[0], name), getattr(after[0], name)
        assert (first is None and second is None) or torch.equal(first, second), name
    assert all(parameter.requires_grad for parameter in loaded.model.parameters())
    assert loaded.model.args.box == 7.5  # ultralytics' losses read it


def test_loading_what_is_not_a_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Student.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable"):
        Student.load(tmp_path / "junk.pt")


def test_saving_leaves_a_trainers_hooks_out_of_the_file_and_in_place(make_student: Callable[..., Student],
                                                                      tmp_path: Path) -> None:
    student = make_student("yolov8")
    seen: list[torch.Tensor] = []
    handle = student.model.model[15].register_forward_hook(lambda _m, _i, output: seen.append(output))
    student.model.train()
    student.model(torch.rand(1, 3, 64, 64))  # the tap now holds a tensor with a graph (deepcopy would refuse it)
    checkpoint = torch.load(student.save(tmp_path / "hooked.pt"), weights_only=False)
    assert not checkpoint["model"].model[15]._forward_hooks
    assert student.model.model[15]._forward_hooks
    handle.remove()
    assert not student.model.model[15]._forward_hooks
