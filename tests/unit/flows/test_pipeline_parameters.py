"""training-pipeline's parameters as the Prefect UI's Custom run form gets them: one plain type each, rules the
server names, and the values Python callers passed before still accepted."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flows.parameters import annotation_mode, given
from flows.pipeline import training_pipeline


@pytest.fixture(scope="module")
def properties() -> dict:
    return parameter_schema(training_pipeline).model_dump()["properties"]


def test_every_parameter_has_one_json_type_so_the_form_shows_a_plain_input(properties) -> None:
    for name, schema in properties.items():
        # anyOf (an `X | None` parameter) makes the form show a type toggle and 'Property is type "None"'
        assert "anyOf" not in schema and schema.get("type") in ("string", "integer", "number", "array"), name
        assert schema.get("description"), name  # each has its help line
        assert "<" not in schema["description"], name  # the form renders markdown: <folder> would vanish


def test_imgsz_is_a_multiple_of_32_by_schema_so_the_message_names_32(properties) -> None:
    assert properties["imgsz"] | {"description": None, "position": None} == {
        "default": 0, "description": None, "minimum": 0, "multipleOf": 32, "position": None, "title": "imgsz",
        "type": "integer"}
    with pytest.raises(ParameterTypeError, match="multiple of 32"):
        training_pipeline.validate_parameters({"imgsz": 100})


def test_mode_offers_the_annotation_modes_and_demo_datas_words(properties) -> None:
    assert properties["mode"]["enum"] == ["auto", "detection_only", "segmentation_only", "detection_and_segmentation",
                                          "boxes", "masks", "both"]
    assert annotation_mode("boxes") == annotation_mode("detection_only") == "detection_only"
    assert annotation_mode("masks") == "segmentation_only" and annotation_mode("both") == "detection_and_segmentation"
    assert annotation_mode("auto") is None


def test_none_from_python_callers_still_means_the_configs_value() -> None:
    checked = training_pipeline.validate_parameters({"data": None, "teacher_epochs": None, "imgsz": None,
                                                     "store": None, "device": None})
    assert checked["data"] == "" and checked["teacher_epochs"] == 0 and checked["imgsz"] == 0
    assert checked["store"] == ""  # no store, as None meant
    assert [given(value) for value in ("", 0, "cpu", 640, 1)] == [None, None, "cpu", 640, 1]
