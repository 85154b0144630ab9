"""The prompt-free students: ultralytics YOLOv8 (boxes), YOLOv8-seg (boxes + masks) and FastSAM (single-class seg).

- `get_student_model(mode, size, num_classes, weights=None, class_names=None, kind=None, activation="silu")` ->
  `Student`, the kind picked from the mode as the mode config recommends; `parse_student_name("yolov8n-seg")` ->
  (kind, size, activation); a "-relu" name is the int8-friendly variant (ReLU in place of SiLU).
- `Student.predict(images)` -> `StudentPrediction` per image (original frame); `save` / `Student.load` (a normal
  ultralytics checkpoint); ONNX export is `mlcore.optimization.export_to_onnx(student, path)`.
- `configure_ultralytics()`: ultralytics' offline settings, the one place they live.
"""

from __future__ import annotations

from mlcore.students.registry import get_student_model, parse_student_name, valid_student_names
from mlcore.students.student import ACTIVATIONS, KINDS, SIZES, Student, student_name
from mlcore.students.types import StudentPrediction
from mlcore.students.ultralytics_setup import configure_ultralytics, ultralytics_module

__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "SIZES",
    "Student",
    "StudentPrediction",
    "configure_ultralytics",
    "get_student_model",
    "parse_student_name",
    "student_name",
    "ultralytics_module",
    "valid_student_names",
]
