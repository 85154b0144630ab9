"""The numpy post-processing gives what ultralytics' own non_max_suppression + process_mask (then the letterbox maps)
give on the same outputs: boxes, scores and classes equal, masks equal but for rare boundary pixels whose logit is
within float rounding of 0."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision  # noqa: F401  (imported: ultralytics then suppresses with torchvision.ops.nms, its fast route)
from ultralytics.utils.nms import non_max_suppression as ultralytics_nms

from mlcore.inference import ONNXEngine, letterbox_images
from mlcore.preprocess import PreprocessMeta
from mlcore.students.nms import non_max_suppression
from mlcore.students.postprocess import postprocess_yolo, postprocess_yolo_reference
from tests.unit.inference.conftest import IMGSZ, Exported

CONF = 0.005


def raw_outputs(exported: Exported, images: list[Path]) -> tuple[np.ndarray, np.ndarray | None, list]:
    engine = ONNXEngine(exported.onnx_dynamic)
    batch = letterbox_images(images, IMGSZ)
    decoded, protos = engine._forward(batch.pixel_values.numpy())
    return decoded, protos, batch.meta


def synthetic_outputs(seed: int, *, batch: int = 2, classes: int = 3, masks: int = 0, anchors: int = 2000,
                      score_steps: int | None = None) -> np.ndarray:
    """Random xywh boxes in a 640 canvas and class scores; score_steps quantises scores (many exact ties, as INT8
    models give)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 640, size=(batch, 2, anchors))
    sizes = rng.uniform(4, 200, size=(batch, 2, anchors))
    scores = rng.uniform(0, 1, size=(batch, classes, anchors)) ** 4
    if score_steps:
        scores = np.round(scores * score_steps) / score_steps
    extra = rng.normal(size=(batch, masks, anchors))
    return np.concatenate([centres, sizes, scores, extra], axis=1).astype(np.float32)


def assert_rows_equal(ours: np.ndarray, theirs: torch.Tensor) -> None:
    assert ours.shape == tuple(theirs.shape), (ours.shape, tuple(theirs.shape))
    assert np.array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize(("conf", "score_steps", "max_det"), [(0.25, None, 300), (0.05, 20, 300), (0.2, None, 7),
                                                              (0.6, 10, 300)])
def test_nms_equals_ultralytics_row_for_row(conf: float, score_steps: int | None, max_det: int,
                                            multi_label: bool) -> None:
    decoded = synthetic_outputs(int(conf * 100) + max_det, masks=4, score_steps=score_steps)
    theirs = ultralytics_nms(torch.from_numpy(decoded), conf, 0.7, multi_label=multi_label, max_det=max_det, nc=3)
    for image, expected in zip(decoded, theirs):
        ours = non_max_suppression(image, num_classes=3, conf=conf, iou=0.7, max_det=max_det,
                                   multi_label=multi_label)
        assert_rows_equal(ours, expected)
    assert sum(len(rows) for rows in theirs) > 2  # the comparison compares something


def test_nms_keeps_the_same_of_two_tied_overlapping_boxes() -> None:
    """Exact score ties (common with INT8) must resolve as torch's sort resolves them."""
    decoded = synthetic_outputs(5, anchors=6000, score_steps=8)
    theirs = ultralytics_nms(torch.from_numpy(decoded), 0.1, 0.5, max_det=300, nc=3)
    for image, expected in zip(decoded, theirs):
        assert_rows_equal(non_max_suppression(image, num_classes=3, conf=0.1, iou=0.5), expected)


def test_nothing_above_conf_gives_empty_rows_of_the_right_width() -> None:
    decoded = synthetic_outputs(1, masks=32)
    rows = non_max_suppression(decoded[0], num_classes=3, conf=1.0, iou=0.7)
    assert rows.shape == (0, 6 + 32) and rows.dtype == np.float32
    assert tuple(ultralytics_nms(torch.from_numpy(decoded), 1.0, 0.7, nc=3)[0].shape) == rows.shape


def test_detections_equal_the_reference_on_a_real_detector(detect_model: Exported, demo_images: list[Path]) -> None:
    decoded, _, metas = raw_outputs(detect_model, demo_images)
    for multi_label in (False, True):
        ours = postprocess_yolo(decoded, None, metas, input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF,
                                multi_label=multi_label)
        theirs = postprocess_yolo_reference(torch.from_numpy(decoded), None, metas, input_size=(IMGSZ, IMGSZ),
                                            num_classes=3, conf=CONF, multi_label=multi_label)
        assert sum(len(result) for result in theirs) >= len(demo_images)
        for got, want in zip(ours, theirs):
            assert got.masks is None and got.image_size == want.image_size
            for name in ("boxes", "scores", "class_ids"):
                assert torch.equal(getattr(got, name), getattr(want, name)), name
            assert got.boxes.dtype == torch.float32 and got.class_ids.dtype == torch.int64


def boundary_band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within `radius` of the mask's edge (inside or out)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    mask = mask.astype(np.uint8)
    return (cv2.dilate(mask, kernel) != cv2.erode(mask, kernel))


def box_band(box: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """Pixels within `radius` of the box's edges."""
    band = np.zeros(shape, dtype=bool)
    x1, y1, x2, y2 = box
    rows, cols = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    near_x = (np.abs(cols - x1) <= radius) | (np.abs(cols - x2) <= radius)
    near_y = (np.abs(rows - y1) <= radius) | (np.abs(rows - y2) <= radius)
    band |= near_x | near_y
    return band


def assert_masks_match(ours: torch.Tensor, theirs: torch.Tensor, boxes: torch.Tensor, radius: int) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.bool
    for mine, reference, box in zip(ours.numpy(), theirs.numpy(), boxes.numpy()):
        differ = mine != reference
        allowed = boundary_band(reference, radius) | box_band(box, reference.shape, radius)
        assert not (differ & ~allowed).any(), f"{int((differ & ~allowed).sum())} interior pixels differ"


def test_masks_equal_the_reference_except_at_boundaries(seg_model: Exported, demo_images: list[Path]) -> None:
    """Demo images are 160x120 and the model takes 96: a real letterbox resize (scale 0.6) on the way back."""
    decoded, protos, metas = raw_outputs(seg_model, demo_images)
    ours = postprocess_yolo(decoded, protos, metas, input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    theirs = postprocess_yolo_reference(torch.from_numpy(decoded), torch.from_numpy(protos), metas,
                                        input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    pixels, differing = 0, 0
    for got, want in zip(ours, theirs):
        assert len(got) == len(want)  # no mask emptied on one side only
        for name in ("boxes", "scores", "class_ids"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert_masks_match(got.masks, want.masks, want.boxes, radius=1)
        pixels += int(want.masks.sum())
        differing += int((got.masks != want.masks).sum())
    assert pixels > 1000 and differing <= 0.001 * pixels, (differing, pixels)


@pytest.mark.parametrize(("original", "resized", "pad"), [((72, IMGSZ), (72, IMGSZ), (0, 12, 0, 12)),
                                                          ((300, 200), (IMGSZ, 64), (16, 0, 16, 0)),
                                                          ((40, 50), (77, IMGSZ), (0, 9, 0, 10))])
def test_masks_of_synthetic_prototypes_equal_the_reference(original: tuple[int, int], resized: tuple[int, int],
                                                           pad: tuple[int, int, int, int]) -> None:
    """Smooth prototypes, boxes crossing the image edge and the padding; no resize, a downscale and an upscale."""
    rng = np.random.default_rng(sum(original))
    meta = PreprocessMeta.build(original, resized, pad)
    cells = torch.from_numpy(rng.normal(size=(1, 32, IMGSZ // 4, IMGSZ // 4)).astype(np.float32))
    protos = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(cells, (1, 1, 1, 1), mode="replicate"), 3, 1)
    anchors = 12
    centres, sizes = rng.uniform(10, 86, size=(1, 2, anchors)), rng.uniform(10, 70, size=(1, 2, anchors))
    scores = np.linspace(0.3, 0.9, anchors).reshape(1, 1, anchors)
    coefficients = rng.normal(size=(1, 32, anchors))
    decoded = np.concatenate([centres, sizes, scores, np.zeros((1, 2, anchors)), coefficients], axis=1)
    decoded = decoded.astype(np.float32)
    ours = postprocess_yolo(decoded, protos.numpy(), [meta], input_size=(IMGSZ, IMGSZ), num_classes=3, conf=0.1,
                            iou=0.99)[0]
    theirs = postprocess_yolo_reference(torch.from_numpy(decoded), protos, [meta], input_size=(IMGSZ, IMGSZ),
                                        num_classes=3, conf=0.1, iou=0.99)[0]
    assert len(theirs) >= 6 and len(ours) == len(theirs)
    assert torch.equal(ours.boxes, theirs.boxes)
    assert_masks_match(ours.masks, theirs.masks, theirs.boxes, radius=1)
    assert int((ours.masks != theirs.masks).sum()) <= 2


def test_empty_results_have_the_reference_shapes(seg_model: Exported, detect_model: Exported,
                                                 demo_images: list[Path]) -> None:
    for exported in (seg_model, detect_model):
        decoded, protos, metas = raw_outputs(exported, demo_images[:2])
        ours = postprocess_yolo(decoded, protos, metas, input_size=(IMGSZ, IMGSZ), num_classes=3, conf=1.0)
        theirs = postprocess_yolo_reference(torch.from_numpy(decoded), None if protos is None else
                                            torch.from_numpy(protos), metas, input_size=(IMGSZ, IMGSZ),
                                            num_classes=3, conf=1.0)
        for got, want in zip(ours, theirs):
            assert len(got) == 0 and got.image_size == want.image_size
            for name in ("boxes", "scores", "class_ids", "masks"):
                a, b = getattr(got, name), getattr(want, name)
                assert (a is None and b is None) or (a.shape == b.shape and a.dtype == b.dtype), name


def test_torch_and_numpy_outputs_give_the_same_detections(seg_model: Exported, demo_images: list[Path]) -> None:
    decoded, protos, metas = raw_outputs(seg_model, demo_images)
    from_numpy = postprocess_yolo(decoded, protos, metas, input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    from_torch = postprocess_yolo(torch.from_numpy(decoded).half(), torch.from_numpy(protos), metas,
                                  input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    half = postprocess_yolo(decoded.astype(np.float16).astype(np.float32), protos, metas,
                            input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    for got, want in zip(from_torch, half):  # half outputs are widened to float32 first, as the reference does
        assert torch.equal(got.boxes, want.boxes) and torch.equal(got.masks, want.masks)
    assert len(from_numpy) == len(metas)
    with pytest.raises(ValueError, match="B metas"):
        postprocess_yolo(decoded, protos, metas[:1], input_size=(IMGSZ, IMGSZ), num_classes=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_outputs_take_the_reference_route_on_the_device(seg_model: Exported, demo_images: list[Path]) -> None:
    decoded, protos, metas = raw_outputs(seg_model, demo_images)
    on_gpu = postprocess_yolo(torch.from_numpy(decoded).cuda(), torch.from_numpy(protos).cuda(), metas,
                              input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    on_cpu = postprocess_yolo(decoded, protos, metas, input_size=(IMGSZ, IMGSZ), num_classes=3, conf=CONF)
    for got, want in zip(on_gpu, on_cpu):
        assert len(got) == len(want)
        assert torch.allclose(got.boxes.cpu(), want.boxes, atol=1e-3)
