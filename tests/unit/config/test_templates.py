"""The shipped templates: all present, valid as shipped, faithful to the schemas, commented, and fillable."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from mlcore.config import CONFIG_SCHEMAS, PLACEHOLDERS, load_config, render_template, templates_dir
from mlcore.config.templates import PLACEHOLDER, TEMPLATE_SUFFIX
from mlcore.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = sorted(templates_dir().glob(f"*{TEMPLATE_SUFFIX}"))
KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*):")

VALUES = {
    "class_names": ["forklift", "pallet", "person"],
    "num_classes": 3,
    "annotation_mode": "detection_and_segmentation",
    "dataset_train": "/data/prepared/train.json",
    "dataset_train_images": "/data/images",
    "dataset_val": "/data/prepared/val.json",
    "dataset_val_images": Path("/data/images"),
    "unlabeled_images": "/data/unlabeled",
}


def _kind(path: Path) -> str:
    return path.name.removesuffix(TEMPLATE_SUFFIX)


def test_every_kind_has_a_template_and_nothing_else() -> None:
    assert {_kind(path) for path in TEMPLATES} == set(CONFIG_SCHEMAS)
    assert len(TEMPLATES) == 14


def test_templates_ship_inside_the_package_and_configs_templates_links_to_them() -> None:
    assert templates_dir() == REPO_ROOT / "mlcore" / "resources" / "templates"
    link = REPO_ROOT / "configs" / "templates"
    assert link.is_symlink()
    assert not os.path.isabs(os.readlink(link))  # relative, so the checkout can move
    assert link.resolve() == templates_dir().resolve()


@pytest.mark.parametrize("path", TEMPLATES, ids=_kind)
def test_shipped_template_validates_as_is(path: Path) -> None:
    config = load_config(path)
    assert config.kind == _kind(path)
    assert isinstance(config, CONFIG_SCHEMAS[_kind(path)])


@pytest.mark.parametrize("path", TEMPLATES, ids=_kind)
def test_template_values_are_the_schema_defaults(path: Path) -> None:
    # Unfilled placeholders mean "not set", so a shipped template must equal the schema's own defaults.
    assert load_config(path) == CONFIG_SCHEMAS[_kind(path)]()


def _schema_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add((*prefix, name))
        annotation = field.annotation
        members = get_args(annotation) if get_origin(annotation) in (Union, type(int | None)) else (annotation,)
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                keys |= _schema_keys(member, (*prefix, name))
    return keys


def _yaml_keys(data: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    keys = set()
    if isinstance(data, dict):
        for name, value in data.items():
            keys.add((*prefix, name))
            if isinstance(value, dict) and value:
                keys |= _yaml_keys(value, (*prefix, name))
    return keys


@pytest.mark.parametrize("path", TEMPLATES, ids=_kind)
def test_template_shows_every_schema_field(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = _schema_keys(CONFIG_SCHEMAS[_kind(path)]) - _yaml_keys(raw)
    assert not missing, f"{path.name} does not show: {sorted('.'.join(key) for key in missing)}"


@pytest.mark.parametrize("path", TEMPLATES, ids=_kind)
def test_every_template_key_is_commented(path: Path) -> None:
    uncommented = []
    previous = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if KEY_LINE.match(line) and " #" not in line and not previous.lstrip().startswith("#"):
            uncommented.append(f"line {number}: {line.strip()}")
        if line.strip():
            previous = line
    assert not uncommented, f"{path.name} has keys without a comment:\n" + "\n".join(uncommented)


@pytest.mark.parametrize("path", TEMPLATES, ids=_kind)
def test_templates_use_only_documented_placeholders_as_quoted_values(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        for match in PLACEHOLDER.finditer(line):
            assert match.group(1) in PLACEHOLDERS, f"{path.name}: undocumented placeholder {match.group(0)}"
            assert re.search(r':\s*"\{\{\w+\}\}"\s*$', line), f"{path.name}: placeholder not a whole value: {line}"


def test_every_schema_field_has_a_description() -> None:
    undocumented = []
    seen: set[type[BaseModel]] = set()

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                undocumented.append(f"{model.__name__}.{name}")
            annotation = field.annotation
            for member in (*get_args(annotation), annotation):
                if isinstance(member, type) and issubclass(member, BaseModel):
                    visit(member)

    for schema in CONFIG_SCHEMAS.values():
        visit(schema)
    assert not undocumented


@pytest.mark.parametrize("kind", sorted(CONFIG_SCHEMAS))
def test_rendered_template_validates_and_keeps_comments(kind: str, tmp_path: Path) -> None:
    text = render_template(kind, VALUES)
    assert text.splitlines()[0].startswith("# ")
    target = tmp_path / f"{kind}.yaml"
    target.write_text(text, encoding="utf-8")
    assert load_config(target).kind == kind


def test_rendered_template_contains_the_values(tmp_path: Path) -> None:
    text = render_template("teacher_grounding_dino_lora", VALUES)
    assert 'class_names: ["forklift", "pallet", "person"]' in text
    assert not PLACEHOLDER.search(text)
    target = tmp_path / "teacher.yaml"
    target.write_text(text, encoding="utf-8")
    config = load_config(target)
    assert config.data.class_names == ["forklift", "pallet", "person"]
    assert config.data.num_classes == 3
    assert config.data.train == Path("/data/prepared/train.json")
    assert config.data.val_images == Path("/data/images")
    assert config.data.annotation_mode == "detection_and_segmentation"


def test_render_fills_calibration_data_and_unlabeled_images(tmp_path: Path) -> None:
    quant = tmp_path / "q.yaml"
    quant.write_text(render_template("quantization", VALUES), encoding="utf-8")
    assert load_config(quant).calibration.data == Path("/data/images")
    kd = tmp_path / "kd.yaml"
    kd.write_text(render_template("kd_both", VALUES), encoding="utf-8")
    assert load_config(kd).data.unlabeled_images_dir == Path("/data/unlabeled")


def test_render_with_partial_values_leaves_the_rest_unset(tmp_path: Path) -> None:
    text = render_template("student_yolov8", {"num_classes": 2, "dataset_val": None})
    assert '"{{dataset_val}}"' in text
    target = tmp_path / "s.yaml"
    target.write_text(text, encoding="utf-8")
    config = load_config(target)
    assert config.data.num_classes == 2
    assert config.data.val is None


def test_render_strict_refuses_unfilled_placeholders() -> None:
    with pytest.raises(ConfigError, match=r"unfilled placeholders: .*\{\{dataset_val\}\}"):
        render_template("student_yolov8", {"num_classes": 2}, strict=True)
    full = {name: VALUES[name] for name in PLACEHOLDERS}
    assert not PLACEHOLDER.search(render_template("student_yolov8", full, strict=True))


def test_render_rejects_values_that_make_an_invalid_config() -> None:
    with pytest.raises(ConfigError) as caught:
        render_template("student_yolov8", {"class_names": ["a", "b"], "num_classes": 3})
    assert "student_yolov8.template.yaml" in str(caught.value)
    assert "num_classes is 3 but class_names lists 2" in str(caught.value)


def test_render_rejects_unknown_placeholder_names_and_kinds() -> None:
    with pytest.raises(ConfigError, match="unknown placeholder name.*classnames"):
        render_template("student_yolov8", {"classnames": ["a"]})
    with pytest.raises(ConfigError, match="(?s)no template for kind 'student_yolo9'.*student_yolov8"):
        render_template("student_yolo9", {})


def test_render_quotes_awkward_strings_safely(tmp_path: Path) -> None:
    names = ['a: b', "it's", '#hash', 'quote"d', "ünïcode"]
    target = tmp_path / "s.yaml"
    target.write_text(render_template("student_yolov8", {"class_names": names}), encoding="utf-8")
    assert load_config(target).data.class_names == names
