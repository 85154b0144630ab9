"""The rule table is the documentation: every option builds exactly the transforms it lists, with 2.x arguments."""

from __future__ import annotations

import itertools
import warnings

import albumentations as A
import pytest

from mlcore.augmentation import get_available_characteristics, get_available_environments, get_pipeline_info
from mlcore.augmentation.factory import build_compose, build_transforms
from mlcore.augmentation.rules import (
    BASE,
    CHARACTERISTIC_RULES,
    ENVIRONMENT_RULES,
    SPATIAL_TRANSFORMS,
    TRANSFORM_DEFAULTS,
    TRANSFORM_ORDER,
)
from mlcore.augmentation.translator import scale_spec
from mlcore.config.schemas.data import OBJECT_CHARACTERISTICS, Environment

QUIET = {"lighting": "stable", "camera": "fixed", "background": "clean", "distance": "fixed"}  # adds nothing
MODES = ("detection_only", "segmentation_only", "detection_and_segmentation")
OPTIONS = [("characteristic", name, None) for name in CHARACTERISTIC_RULES] + [
    ("environment", key, option) for key, options in ENVIRONMENT_RULES.items() for option in options]


def _option_ids(option: tuple) -> str:
    return f"{option[1]}={option[2]}" if option[2] else option[1]


def test_table_covers_exactly_the_config_schema_names():
    assert tuple(CHARACTERISTIC_RULES) == OBJECT_CHARACTERISTICS
    for key, field in Environment.model_fields.items():
        assert tuple(ENVIRONMENT_RULES[key]) == field.annotation.__args__
    assert set(ENVIRONMENT_RULES) == set(Environment.model_fields)
    assert set(get_available_characteristics()) == set(OBJECT_CHARACTERISTICS)
    assert {k: set(v) for k, v in get_available_environments().items()} == {
        k: set(v) for k, v in ENVIRONMENT_RULES.items()}


def test_every_named_transform_exists_in_albumentations_and_has_a_place_in_the_order():
    specs = [*BASE.specs, *(s for r in CHARACTERISTIC_RULES.values() for s in r.specs),
             *(s for opts in ENVIRONMENT_RULES.values() for r in opts.values() for s in r.specs)]
    for spec in specs:
        assert hasattr(A, spec.name), spec.name
        assert spec.name in TRANSFORM_ORDER, spec.name
        assert spec.why and 0 < spec.p <= 1
    assert set(TRANSFORM_DEFAULTS) <= set(TRANSFORM_ORDER)


@pytest.mark.parametrize("option", OPTIONS, ids=_option_ids)
@pytest.mark.parametrize("intensity", ["low", "medium", "high"])
def test_each_option_produces_the_transforms_it_documents(option, intensity):
    kind, name, value = option
    rule = CHARACTERISTIC_RULES[name] if kind == "characteristic" else ENVIRONMENT_RULES[name][value]
    environment = {**QUIET, name: value} if kind == "environment" else QUIET
    info = get_pipeline_info([name] if kind == "characteristic" else [], environment, intensity,
                             "detection_and_segmentation")
    documented = {spec.name for spec in (*BASE.specs, *rule.specs)}
    assert {t.name for t in info.transforms} == documented
    built = build_transforms(info)
    assert [type(t).__name__ for t in built] == [t.name for t in info.transforms]
    for spec in rule.specs:  # the built transform carries the documented values, scaled for this intensity
        planned = scale_spec(spec, intensity)
        transform = built[[t.name for t in info.transforms].index(spec.name)]
        serialized = transform.to_dict()["transform"]
        assert serialized["p"] == pytest.approx(planned.p)
        for key, value in planned.params.items():
            got = serialized[key]
            for got_value in (got.values() if isinstance(got, dict) else [got]):  # Affine: {"x": .., "y": ..}
                expected = pytest.approx(value)
                assert (tuple(got_value) if isinstance(value, tuple) else got_value) == expected, (spec.name, key)


@pytest.mark.parametrize("mode", MODES)
def test_no_albumentations_warnings_for_any_pipeline(mode):
    """Old 1.x argument names are warned about and ignored; none may slip in."""
    envs = [dict(zip(ENVIRONMENT_RULES, combo)) for combo in itertools.product(*ENVIRONMENT_RULES.values())]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for environment, intensity in itertools.product(envs, ["low", "medium", "high"]):
            build_compose(get_pipeline_info(list(CHARACTERISTIC_RULES), environment, intensity, mode), seed=0)
        for name in CHARACTERISTIC_RULES:
            build_compose(get_pipeline_info([name], QUIET, "high", mode), seed=0)


def test_spans_scale_around_their_neutral_value():
    low, high = (scale_spec(CHARACTERISTIC_RULES["changes_size"].specs[0], i) for i in ("low", "high"))
    lo_range, hi_range = low.params["scale"], high.params["scale"]
    assert hi_range[0] < lo_range[0] < 1.0 < lo_range[1] < hi_range[1]
    assert low.p < high.p <= 1.0
    blur = scale_spec(ENVIRONMENT_RULES["camera"]["shaky"].specs[0], "high").params["blur_limit"]
    assert all(isinstance(k, int) and k % 2 == 1 and k >= 3 for k in blur)


def test_flip_probability_is_not_scaled():
    for intensity in ("low", "high"):
        info = get_pipeline_info([], QUIET, intensity)
        assert [(t.name, t.p) for t in info.transforms] == [("HorizontalFlip", 0.5)]


def test_warps_a_box_cannot_follow_are_left_out_without_masks():
    with_masks = get_pipeline_info(["changes_shape"], QUIET, "medium", "detection_and_segmentation")
    without = get_pipeline_info(["changes_shape"], QUIET, "medium", "detection_only")
    assert "ElasticTransform" in {t.name for t in with_masks.transforms}
    assert "ElasticTransform" not in {t.name for t in without.transforms}
    assert {t.name for t in without.transforms} == {"HorizontalFlip", "Affine", "Perspective"}


def test_geometry_comes_before_pixel_transforms():
    info = get_pipeline_info(list(CHARACTERISTIC_RULES), {"lighting": "poor", "camera": "moving"}, "medium")
    spatial = [t.spatial for t in info.transforms]
    assert spatial == sorted(spatial, reverse=True) and SPATIAL_TRANSFORMS
