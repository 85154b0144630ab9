"""What every training command resolves first: the device to run on and the dataset's mode config."""

from __future__ import annotations

from pathlib import Path

import torch

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.findings import Severity
from mlcore.data.mode_config import MODE_CONFIG_NAME, ModeConfig
from mlcore.errors import ConfigError, DatasetError
from mlcore.logs import get_logger

log = get_logger(__name__)


def resolve_device(device: str | None = None, gpu: int | None = None) -> torch.device:
    """`--device` as given, `--gpu N` -> cuda:N, else cuda:0 when CUDA is there, else cpu."""
    if device is not None and gpu is not None:
        raise ConfigError("--device and --gpu both given", fix="pass one of them")
    if gpu is not None:
        device = f"cuda:{gpu}"
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}", where="--device", fix="use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and (not torch.cuda.is_available()
                                    or (resolved.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"{resolved} is not available on this machine", where="--device / --gpu",
                          fix="pick an existing GPU, or pass --device cpu")
    return resolved


def resolve_mode(data: str | Path, val: str | Path, output_dir: str | Path, *, auto_detect: bool = False,
                 images: str | Path | None = None, val_images: str | Path | None = None
                 ) -> tuple[ModeConfig, Path, Path]:
    """(mode config, train file, val file): the validate output beside the data, or a fresh validate run (which reads
    the train images from IMAGES and the val images from VAL_IMAGES, each found as `validate` finds them if None)."""
    data, val = Path(data), Path(val)
    beside = data.parent / MODE_CONFIG_NAME
    if beside.is_file():
        return ModeConfig.read(beside), data, val
    if not auto_detect:
        raise ConfigError(f"no {MODE_CONFIG_NAME} beside the training data", where=str(data),
                          fix=f"run `mlcore validate --data <annotations.json> --split ...` and train on the split "
                              f"files it writes (the {MODE_CONFIG_NAME} is beside them), or pass --auto-detect")
    from mlcore.data.prepare import prepare_dataset  # the validate step; only needed here

    prepared = []
    for name, path, folder in (("train", data, images), ("val", val, val_images)):
        report = prepare_dataset(path, images_dir=folder, output_dir=Path(output_dir) / "dataset" / name,
                                 progress=False)
        if not report.usable:
            first = next((f for f in report.findings if f.severity == Severity.ERROR), None)
            fixes = [first.fix if first else None, "for the --val file: --val-images" if name == "val" else None,
                     f"full report: {report.outputs.get('report')}"]
            raise DatasetError(f"the {name} data is not usable for training" + (f": {first.message}" if first else ""),
                               where=str(path), fix="; ".join(fix for fix in fixes if fix))
        prepared.append(report)
    mode = ModeConfig.read(Path(prepared[0].outputs["mode_config"]))
    log.info("detected mode %s from %s", mode.annotation_mode, data)
    return mode, Path(prepared[0].outputs["cleaned"]), Path(prepared[1].outputs["cleaned"])


def open_split(annotation_file: str | Path, images_dir: str | Path | None = None,
               fallback_root: str | Path | None = None) -> CocoDataset:
    """A training split's dataset. Its images: IMAGES_DIR when given (`--images`; an error when it holds none of
    them); else where the file says or they are found (CocoDataset's rule); else FALLBACK_ROOT (the mode config's
    images_root) when that folder holds them. The error of the file's own search is the one raised."""
    if images_dir is not None:
        return CocoDataset(annotation_file, images_dir)
    try:
        return CocoDataset(annotation_file)
    except DatasetError as error:
        if fallback_root is None or not Path(fallback_root).is_dir():
            raise
        try:
            return CocoDataset(annotation_file, fallback_root)
        except DatasetError:
            raise error from None
