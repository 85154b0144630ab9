"""Which student a dataset gets, and building it: from ultralytics' architecture yaml, or from a local .pt.

A variant is a yaml name and a class count: YOLOv8 (`yolov8{size}.yaml`), YOLOv8-seg (`yolov8{size}-seg.yaml`), and
FastSAM, which is a single-class YOLOv8-seg; a "-relu" name (yolov8n-relu) builds the same network with ReLU in place
of SiLU, the variant that quantizes into fast int8 convs. Nothing is ever downloaded: a weights path must be a local
file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mlcore.data.mode import AnnotationMode, recommended_student
from mlcore.data.mode_config import ModeConfig
from mlcore.errors import ConfigError, ModelError
from mlcore.logs import get_logger
from mlcore.students.student import (ACTIVATIONS, KINDS, SIZES, TASK_OF_KIND, Student, activation_of,
                                     load_ultralytics_checkpoint, student_name)
from mlcore.students.ultralytics_setup import configure_ultralytics, quiet_ultralytics

log = get_logger(__name__)

ARCHITECTURE_YAML = {"yolov8": "yolov8{size}.yaml", "yolov8_seg": "yolov8{size}-seg.yaml",
                     "fastsam": "yolov8{size}-seg.yaml"}
# recommended_student (mlcore.data.mode) names -> kinds; the size comes from the student config.
KIND_OF_RECOMMENDATION = {"yolov8n": "yolov8", "yolov8n-seg": "yolov8_seg", "fastsam": "fastsam"}
FASTSAM_CLASS_NAME = "object"  # StudentFastSamConfig.data.class_name's default
FASTSAM_DEFAULT_SIZE = "s"  # FastSAM-s, the smaller published FastSAM
_NAME_PATTERN = re.compile(
    r"^(?:yolov8(?P<v8>[nslmx])(?P<seg>-seg)?|fastsam(?:-(?P<fs>[nslmx]))?)(?:-(?P<act>relu))?$")
# the yaml's "activation" (ultralytics' parse_model evaluates it); SiLU is the yaml's own default
_ACTIVATION_MODULE = {"relu": "nn.ReLU()"}
_NO_DOWNLOAD_FIX = ("give the path of a local .pt file; mlcore never downloads weights (on a machine with internet, "
                    "fetch e.g. yolov8n.pt from the ultralytics releases and copy it here; "
                    "scripts/download_pretrained_models.sh covers only the teachers), or set weights to null to "
                    "start from random weights")


class StudentSpec(NamedTuple):
    """What a student name says: kind (yolov8 | yolov8_seg | fastsam), size, activation (silu | relu)."""

    kind: str
    size: str
    activation: str = "silu"


def valid_student_names() -> list[str]:
    return ([f"yolov8{size}" for size in SIZES] + [f"yolov8{size}-seg" for size in SIZES]
            + [f"fastsam-{size}" for size in SIZES])


def parse_student_name(name: str) -> StudentSpec:
    """CLI name -> (kind, size, activation): yolov8n -> (yolov8, n, silu), yolov8s-seg -> (yolov8_seg, s, silu),
    fastsam-x -> (fastsam, x, silu), yolov8n-seg-relu -> (yolov8_seg, n, relu).

    A bare "fastsam" (what the mode config recommends) is FastSAM-s.
    """
    match = _NAME_PATTERN.match(name.strip().lower())
    if not match:
        raise ConfigError(f"unknown student {name!r}", where="--student",
                          fix=f"use one of: {', '.join(valid_student_names())}, or any of them ending in -relu "
                              "(e.g. yolov8n-relu: ReLU in place of SiLU, faster in int8)")
    activation = match["act"] or "silu"
    if match["v8"]:
        return StudentSpec("yolov8_seg" if match["seg"] else "yolov8", match["v8"], activation)
    return StudentSpec("fastsam", match["fs"] or FASTSAM_DEFAULT_SIZE, activation)


def student_kind(mode: AnnotationMode, num_classes: int) -> str:
    """The kind the validate step recommends for this mode (`ModeConfig.recommended_student`)."""
    return KIND_OF_RECOMMENDATION[recommended_student(mode, num_classes)]


def get_student_model(mode: AnnotationMode | ModeConfig, size: str = "n", num_classes: int | None = None,
                      weights: str | os.PathLike[str] | None = None, class_names: Sequence[str] | None = None,
                      kind: str | None = None, activation: str = "silu") -> Student:
    """The student for a dataset's mode, built from the architecture yaml (random init) or a local .pt.

    mode: the annotation mode, or the ModeConfig (then its class names are the default). The kind follows the mode
    config's recommendation (detection_only -> yolov8, segmentation with one class -> fastsam, otherwise
    yolov8_seg) unless `kind` says otherwise. Class names come from the caller; with only num_classes they are
    placeholders "class0", ... FastSAM always has one class, named by a single given class name or "object".
    activation: silu (ultralytics' own) or relu; weights load into either (same tensors), so a SiLU checkpoint can
    start a ReLU student (it then has to adapt to the new activation while it trains).
    """
    if isinstance(mode, ModeConfig):
        class_names = list(class_names) if class_names is not None else mode.class_names
        mode = mode.annotation_mode
    names = _class_names(class_names, num_classes)
    kind = kind or student_kind(mode, len(names) if names else 1)
    if kind not in KINDS:
        raise ConfigError(f"unknown student kind {kind!r}", where="kind", fix=f"use one of: {', '.join(KINDS)}")
    if size not in SIZES:
        raise ConfigError(f"unknown student size {size!r}", where="model.size", fix=f"use one of: {', '.join(SIZES)}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown student activation {activation!r}", where="activation",
                          fix=f"use one of: {', '.join(ACTIVATIONS)}")
    if kind == "fastsam":
        if len(names) > 1:
            log.info("FastSAM is single-class: its %d classes are trained as one, %r", len(names), FASTSAM_CLASS_NAME)
        names = names if len(names) == 1 else [FASTSAM_CLASS_NAME]
    elif not names:
        raise ConfigError(f"a {kind} student needs its classes", where="class_names",
                          fix="pass the mode config's class names (or num_classes)")
    model = build_model(kind, size, len(names), activation)
    model.names = dict(enumerate(names))  # before the transfer: ultralytics moves class rows by name
    if weights is not None:
        source = load_weights(weights)
        transfer_weights(model, source)
        if activation_of(source) != activation:
            log.info("student weights from a %s network start a %s student", activation_of(source), activation)
        model.names = dict(enumerate(names))
    return Student(kind=kind, size=size, model=model, class_names=list(names))


def build_model(kind: str, size: str, num_classes: int, activation: str = "silu") -> nn.Module:
    """ultralytics DetectionModel / SegmentationModel from the architecture yaml, with its default hyperparameters.

    The activation goes into the yaml dict (so the model's own `yaml` records it); ultralytics' parser applies it by
    setting the class attribute `Conv.default_act`. ultralytics 8.4 puts it back itself, older releases this project
    allows (>= 8.3) leave it set for every later model, so it is put back here too.
    """
    configure_ultralytics()
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel, yaml_model_load
    from ultralytics.utils import DEFAULT_CFG_DICT, IterableSimpleNamespace

    model_class = SegmentationModel if TASK_OF_KIND[kind] == "segment" else DetectionModel
    architecture = yaml_model_load(ARCHITECTURE_YAML[kind].format(size=size))
    if activation != "silu":
        architecture["activation"] = _ACTIVATION_MODULE[activation]
    default_act = Conv.default_act
    try:
        with quiet_ultralytics():
            model = model_class(architecture, nc=num_classes, verbose=False)
    finally:
        Conv.default_act = default_act
    # ultralytics' losses read box/cls/dfl gains from model.args, as its trainer sets them.
    model.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, "task": TASK_OF_KIND[kind],
                                            "single_cls": kind == "fastsam"})
    model.task = TASK_OF_KIND[kind]
    return model


def load_weights(weights: str | os.PathLike[str]) -> nn.Module:
    """The model inside a local ultralytics .pt; a name ultralytics would download, or a missing file, fails."""
    path = Path(weights).expanduser()
    if not path.is_file():
        bare = path.parent == Path(".") and not str(weights).startswith(("./", ".\\"))
        reason = ("is not a local file, and a bare name is what ultralytics would download"
                  if bare else "does not exist")
        raise ModelError(f"student weights {str(weights)!r} {reason}; mlcore never downloads", where=str(weights),
                         fix=_NO_DOWNLOAD_FIX)
    if path.suffix != ".pt":
        raise ModelError("student weights must be an ultralytics .pt checkpoint", where=str(path),
                         fix="give a .pt file written by ultralytics or by mlcore")
    model, _ = load_ultralytics_checkpoint(path)
    return model


def transfer_weights(model: nn.Module, source: nn.Module) -> int:
    """Copy the source's tensors into `model` where names and shapes match (ultralytics' `model.load`); count them.

    With another class count, everything but the class-specific head layers transfers, and ultralytics' loader also
    moves the rows of classes whose names match.
    """
    source_state = {key: value.float() for key, value in source.state_dict().items()}
    model.load(source, verbose=False)
    target_state = model.state_dict()
    transferred = sum(1 for key, value in target_state.items()
                      if key in source_state and source_state[key].shape == value.shape
                      and torch.equal(source_state[key].to(value.dtype), value))
    total = len(target_state)
    source_scale = getattr(source, "yaml", {}).get("scale")
    log.info("student weights: transferred %d/%d tensors from %s", transferred, total,
             getattr(source, "pt_path", "the checkpoint"))
    if transferred < total // 2:
        log.warning("only %d/%d student tensors came from the weights file (its architecture, scale %s, differs); "
                    "most of the student starts from random weights", transferred, total, source_scale)
    return transferred


def _class_names(class_names: Sequence[str] | None, num_classes: int | None) -> list[str]:
    if class_names is not None:
        names = [str(name) for name in class_names]
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes is {num_classes} but {len(names)} class names were given",
                              where="num_classes", fix="leave num_classes out; it follows the class names")
        return names
    if num_classes is None:
        return []
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}", where="num_classes")
    return [f"class{index}" for index in range(num_classes)]


__all__ = ["StudentSpec", "build_model", "get_student_model", "load_weights", "parse_student_name", "student_kind",
           "student_name", "transfer_weights", "valid_student_names"]
