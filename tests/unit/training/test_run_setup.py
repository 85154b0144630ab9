"""Where a training split's images are: --images, else what the file says, else the mode config's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.data.coco_dataset import CocoDataset
from mlcore.data.demo import make_demo_dataset
from mlcore.data.prepare import prepare_dataset
from mlcore.errors import DatasetError
from mlcore.training.run_setup import open_split, resolve_mode
from tests.unit.relocated import Relocated, relocate


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Relocated, Relocated, Path]:
    """The train and val splits of a demo dataset, each moved away from its images; and the original images."""
    root = tmp_path_factory.mktemp("run_setup")
    source = make_demo_dataset(root / "demo", mode="boxes", num_images=6, negatives=0, image_size=(128, 96), seed=2)
    prepare_dataset(source, output_dir=root / "prepared", split="train:0.5,val:0.5", progress=False)
    images = source.parent / "images"
    return (relocate(root / "prepared" / "train.json", images, root / "moved"),
            relocate(root / "prepared" / "val.json", images, root / "moved"), images)


def assert_names_the_search(error: pytest.ExceptionInfo[DatasetError], moved: Relocated) -> None:
    message = str(error.value)
    assert "none of the" in message and all(str(folder) in message for folder in moved.tried_folders())
    assert f"--images '{moved.images}'" in message  # the fix names the folder that holds them


def test_a_moved_split_fails_naming_the_folders_tried_and_works_with_images(moved) -> None:
    train, _, _ = moved
    with pytest.raises(DatasetError) as error:
        open_split(train.annotations)
    assert_names_the_search(error, train)
    dataset = open_split(train.annotations, train.images)
    assert dataset.images_root == train.images and dataset[0].image_path.is_file()


def test_images_win_over_the_mode_configs_folder_which_is_the_fallback(moved, tmp_path: Path) -> None:
    train, _, original = moved
    assert open_split(train.annotations, None, original).images_root == original
    assert open_split(train.annotations, train.images, original).images_root == train.images
    with pytest.raises(DatasetError) as error:  # a fallback that holds none of them: the file's own search speaks
        open_split(train.annotations, None, tmp_path)
    assert_names_the_search(error, train)


def test_auto_detect_validates_each_file_with_its_images(moved, tmp_path: Path) -> None:
    train, val, _ = moved
    with pytest.raises(DatasetError) as error:
        resolve_mode(train.annotations, val.annotations, tmp_path / "no_images", auto_detect=True)
    assert_names_the_search(error, train)
    mode, train_file, val_file = resolve_mode(train.annotations, val.annotations, tmp_path / "run", auto_detect=True,
                                              images=train.images, val_images=val.images)
    assert mode.annotation_mode == "detection_only"
    assert CocoDataset(train_file).images_root.resolve() == train.images.resolve()
    assert CocoDataset(val_file).images_root.resolve() == val.images.resolve()
