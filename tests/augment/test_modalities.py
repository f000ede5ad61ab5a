"""The preset registry: names, parameter overrides, normalisation and what each preset must (not) do."""

from __future__ import annotations

import dataclasses

import pytest

from dinomed.augment.modalities import Preset, available_modalities, get_preset, register_modality
from dinomed.config import ConfigError
from dinomed.recipe import MODALITIES

COLOUR_OPS = {"color_jitter", "grayscale", "solarize"}


def _op_names(name: str, channels: int) -> set[str]:
    preset = get_preset(name)
    views = [preset.ops("global", 0, channels), preset.ops("global", 1, channels), preset.ops("local", 0, channels)]
    return {op.name for ops in views for op in ops if op.p > 0}


def test_every_recipe_modality_has_a_documented_preset() -> None:
    assert available_modalities() == sorted(MODALITIES)
    for name in available_modalities():
        doc = type(get_preset(name)).__doc__ or ""
        assert "DINO" in doc, f"preset '{name}' must say how it relates to DINO's augmentations"


def test_unknown_modality_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown modality 'xray'; valid modalities are \['endoscopy', 'natural'"):
        get_preset("xray")


def test_params_override_defaults_and_unknown_params_fail() -> None:
    preset = get_preset("oct", {"rotate_limit": 5, "blur_sigma": [0.2, 0.5]})
    assert preset.rotate_limit == 5.0 and preset.blur_sigma == (0.2, 0.5)
    assert get_preset("oct").rotate_limit == 10.0
    with pytest.raises(ValueError, match=r"augment.params.rotate_limt: unknown parameter .* valid parameters are \[.*'rotate_limit'"):
        get_preset("oct", {"rotate_limt": 5})
    with pytest.raises(ConfigError, match=r"augment.params.rotate_limit.*expected a number"):
        get_preset("oct", {"rotate_limit": "five"})
    with pytest.raises(ConfigError, match=r"hflip_p must be a probability"):
        get_preset("oct", {"hflip_p": 2.0})


def test_oct_keeps_layer_order_and_has_no_colour() -> None:
    names = _op_names("oct", 1)
    assert "vflip" not in names and not names & COLOUR_OPS
    assert {"speckle", "gamma", "gaussian_blur", "hflip", "rotate"} <= names
    assert get_preset("oct").rotate_limit <= 10


def test_endoscopy_has_colour_fov_and_highlights() -> None:
    assert {"color_jitter", "fov_mask", "specular", "motion_blur", "vflip", "rotate"} <= _op_names("endoscopy", 3)
    assert get_preset("endoscopy").local_scale[0] > 0.05


def test_thermal_has_sensor_noise_but_no_colour_ops() -> None:
    names = _op_names("thermal", 1)
    assert {"stripe_noise", "dead_pixels", "gaussian_blur", "hflip"} <= names and not names & COLOUR_OPS
    assert get_preset("thermal").local_scale[0] > get_preset("natural").local_scale[0]


def test_natural_is_dino() -> None:
    preset = get_preset("natural")
    assert (preset.brightness, preset.contrast, preset.saturation, preset.hue, preset.jitter_p) == (0.4, 0.4, 0.2, 0.1, 0.8)
    assert preset.blur_p == (1.0, 0.1, 0.5) and preset.grayscale_p == 0.2
    solarize = [{op.name for op in preset.ops("global", i, 3)} for i in (0, 1)]
    assert "solarize" not in solarize[0] and "solarize" in solarize[1]
    assert "solarize" not in {op.name for op in preset.ops("local", 0, 3)}


@pytest.mark.parametrize("name", available_modalities())
def test_normalization_matches_channels(name: str) -> None:
    for channels in (1, 3):
        mean, std = get_preset(name).normalization(channels)
        assert len(mean) == len(std) == channels and all(0 < m < 1 for m in mean) and all(s > 0 for s in std)
    assert get_preset("natural").normalization(3) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_register_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="'oct' is already registered"):

        @register_modality("oct")
        @dataclasses.dataclass
        class Another(Preset):
            pass
