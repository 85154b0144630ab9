"""Merging and validation: overlapping rules become one transform; wrong names fail with the valid ones listed."""

from __future__ import annotations

import json

import pytest

from mlcore.augmentation import get_pipeline, get_pipeline_info
from mlcore.augmentation.translator import PlannedTransform, merge
from mlcore.errors import ConfigError

QUIET = {"lighting": "stable", "camera": "fixed", "background": "clean", "distance": "fixed"}


def _by_name(info):
    return {t.name: t for t in info.transforms}


def test_two_brightness_sources_become_one_transform_with_the_wider_range():
    alone = _by_name(get_pipeline_info(["reflective_surface"], QUIET))["RandomBrightnessContrast"]
    light = _by_name(get_pipeline_info([], {**QUIET, "lighting": "variable"}))["RandomBrightnessContrast"]
    info = get_pipeline_info(["reflective_surface"], {**QUIET, "lighting": "variable"})
    names = [t.name for t in info.transforms]
    assert names.count("RandomBrightnessContrast") == 1
    both = _by_name(info)["RandomBrightnessContrast"]
    for key in ("brightness_limit", "contrast_limit"):
        assert both.params[key] == (min(alone.params[key][0], light.params[key][0]),
                                    max(alone.params[key][1], light.params[key][1]))
    assert both.params["brightness_limit"] == (-0.3, 0.3)  # reflective (-0.2, 0.3) u variable (-0.3, 0.3)
    assert both.p == max(alone.p, light.p)
    assert both.sources == ["characteristic:reflective_surface", "lighting:variable"]


def test_geometry_from_several_options_is_one_affine_with_every_parameter():
    info = get_pipeline_info(["changes_shape", "changes_size"], {**QUIET, "camera": "moving", "distance": "close"})
    affine = [t for t in info.transforms if t.name == "Affine"]
    assert len(affine) == 1
    params = affine[0].params
    assert params["scale"] == (0.7, 1.6)  # changes_size (0.7, 1.3) u moving (0.9, 1.1) u close (1.1, 1.6)
    assert params["shear"] == (-8, 8) and params["rotate"] == (-10, 10)
    assert params["translate_percent"] == (-0.15, 0.15)


def test_merge_rule_on_plain_values():
    merged = merge([
        ("a", PlannedTransform("Affine", {"scale": (0.8, 1.2), "x": 1.0}, 0.3)),
        ("b", PlannedTransform("Affine", {"scale": (0.9, 1.5), "x": 2.0, "rotate": (-5, 5)}, 0.6)),
        ("c", PlannedTransform("HorizontalFlip", {}, 0.5)),
    ])
    assert [t.name for t in merged] == ["HorizontalFlip", "Affine"]  # build order, not request order
    assert merged[1].params == {"scale": (0.8, 1.5), "x": 2.0, "rotate": (-5, 5)} and merged[1].p == 0.6
    with pytest.raises(ValueError, match="rules disagree"):
        merge([("a", PlannedTransform("CoarseDropout", {"fill": "random"}, 0.5)),
               ("b", PlannedTransform("CoarseDropout", {"fill": "inpaint_ns"}, 0.5))])


def test_intensity_widens_ranges_and_raises_probabilities():
    low, medium, high = (_by_name(get_pipeline_info(["low_contrast"], QUIET, i)) for i in ("low", "medium", "high"))
    assert low["RandomGamma"].params["gamma_limit"] == (92.5, 107.5)
    assert medium["RandomGamma"].params["gamma_limit"] == (85, 115)
    assert high["RandomGamma"].params["gamma_limit"] == (77.5, 122.5)
    assert low["CLAHE"].p < medium["CLAHE"].p < high["CLAHE"].p


def test_environment_defaults_come_from_the_config_schema():
    info = get_pipeline_info([])
    assert info.environment == {"lighting": "stable", "camera": "fixed", "background": "clean",
                                "distance": "variable"}
    assert "Affine" in _by_name(info)  # distance: variable (the schema default) adds scale jitter


@pytest.mark.parametrize("call, valid", [
    (lambda: get_pipeline_info(["shiny"]), "changes_shape, changes_size, reflective_surface"),
    (lambda: get_pipeline_info([], {"lighting": "dim"}), "stable, variable, poor"),
    (lambda: get_pipeline_info([], {"weather": "rain"}), "lighting, camera, background, distance"),
    (lambda: get_pipeline_info([], None, "extreme"), "low, medium, high"),
    (lambda: get_pipeline_info([], None, "medium", "keypoints"), "detection_only, segmentation_only"),
    (lambda: get_pipeline(["low_contrast", "glassy"]), "partially_hidden"),
])
def test_unknown_names_fail_with_the_valid_ones(call, valid):
    with pytest.raises(ConfigError) as error:
        call()
    assert valid in str(error.value) and "unknown" in str(error.value)


def test_comma_separated_string_and_repeats_are_accepted():
    info = get_pipeline_info("low_contrast, partially_hidden,low_contrast", QUIET)
    assert info.characteristics == ["low_contrast", "partially_hidden"]


def test_info_is_json_ready():
    info = get_pipeline_info(["changes_size", "partially_hidden"], {"lighting": "poor"}, "high", "detection_only")
    data = json.loads(json.dumps(info.to_dict()))
    assert data["mode"] == "detection_only" and data["carries_masks"] is False
    assert {t["name"] for t in data["transforms"]} >= {"Affine", "CoarseDropout", "GaussNoise"}
    assert all(isinstance(t["p"], float) and t["sources"] for t in data["transforms"])
