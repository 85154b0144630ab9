"""A random-weight student whose predictions depend on the image: what makes two engines' agreement mean something."""

from __future__ import annotations

from pathlib import Path

import torch

from mlcore.students import Student


def image_dependent(student: Student, images: list[Path], imgsz: int = 64) -> Student:
    """A random-weight student whose predictions depend on the image, as the checkpoint ONNX export reads holds it.

    With BatchNorm's default statistics a random YOLO's activations shrink about tenfold per layer: its boxes and
    scores ignore the image and tie, so any two engines, right or wrong, agree and score 0. Statistics measured on
    real images keep them alive; fp16-rounded weights are what its saved checkpoint (and so its ONNX export) holds.
    """
    calibrate_batchnorm(student.model, student.preprocessor(imgsz)(images).pixel_values)
    student.model.half().float()
    return student


def calibrate_batchnorm(model: torch.nn.Module, pixels: torch.Tensor) -> None:
    """BatchNorm running statistics measured on `pixels` (one plain average), then the model in eval mode."""
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch below
    model.train()
    with torch.no_grad():
        model(pixels)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
