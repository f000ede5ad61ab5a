"""The custom imaging-physics ops and the backend-neutral Op description."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed.augment.ops import (
    CUSTOM_OPS,
    Op,
    circular_fov_mask,
    dead_pixels,
    foreground_mask,
    specular_highlights,
    speckle_noise,
    stripe_noise,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_speckle_is_multiplicative_unit_mean_and_channel_shared() -> None:
    image = np.full((64, 64, 3), 0.4, dtype=np.float32)
    image[:16] = 0.0
    out = speckle_noise(image, _rng(), sigma=0.2)
    assert np.all(out[:16] == 0.0)  # multiplicative: the dark vitreous stays dark
    assert abs(out[16:].mean() / 0.4 - 1.0) < 0.02
    assert 0.15 < out[16:, :, 0].std() / 0.4 < 0.25
    assert np.array_equal(out[..., 0], out[..., 2])  # grayscale stays grayscale


def test_fov_mask_zeroes_corners_and_keeps_centre() -> None:
    for shape in [(40, 60, 3), (48, 48, 1)]:
        image = np.ones(shape, dtype=np.float32)
        for seed in range(50):
            out = circular_fov_mask(image, _rng(seed))
            assert all(out[y, x].max() == 0.0 for y in (0, -1) for x in (0, -1))
            assert np.all(out[shape[0] // 2, shape[1] // 2] == 1.0)


def test_specular_highlights_only_brighten_and_saturate() -> None:
    image = np.full((64, 64, 3), 0.3, dtype=np.float32)
    out = specular_highlights(image, _rng(1), count=3, radius=(0.05, 0.1))
    assert np.all(out >= image - 1e-6) and out.max() == pytest.approx(1.0)
    assert out.shape == image.shape


def test_stripe_noise_is_one_offset_per_column_or_row() -> None:
    image = np.full((32, 48, 1), 0.5, dtype=np.float32)
    for seed in range(8):
        out = stripe_noise(image, _rng(seed), sigma=0.05)[..., 0]
        per_column = np.allclose(out, out[:1, :])
        per_row = np.allclose(out, out[:, :1])
        assert per_column != per_row and out.std() > 0.01


def test_dead_pixels_are_zero_or_one_and_counted() -> None:
    image = np.full((50, 40, 1), 0.5, dtype=np.float32)
    out = dead_pixels(image, _rng(), fraction=0.01)
    changed = out[..., 0] != 0.5
    assert changed.sum() == 20 and set(np.unique(out[changed])) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["stripe_noise", "dead_pixels"])
def test_thermal_ops_never_create_colour_channels(name: str) -> None:
    image = _rng(3).random((24, 24, 1), dtype=np.float32)
    out = CUSTOM_OPS[name](image, _rng(), **{"sigma": 0.05} if name == "stripe_noise" else {"fraction": 0.05})
    assert out.shape == (24, 24, 1) and out.dtype == np.float32


def test_op_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown augmentation op 'sharpen'; valid ops are \[.*'speckle'"):
        Op("sharpen")
    with pytest.raises(ValueError, match=r"op 'speckle' has no parameter 'sigmaa'; valid parameters are \['sigma'\]"):
        Op("speckle", params={"sigmaa": 0.1})
    with pytest.raises(ValueError, match="probability p must be in"):
        Op("hflip", p=1.5)


def test_strength_scales_photometric_ops_only() -> None:
    speckle = Op("speckle", p=0.6, params={"sigma": 0.2}, magnitudes=("sigma",))
    flip = Op("hflip", p=0.5, photometric=False)
    half = speckle.scaled(0.5)
    assert half is not None and half.p == pytest.approx(0.3) and half.params["sigma"] == pytest.approx(0.1)
    assert speckle.scaled(2.0).p == 1.0 and speckle.scaled(2.0).params["sigma"] == pytest.approx(0.4)
    assert speckle.scaled(0.0) is None
    assert flip.scaled(0.0) is flip


def _band_image(seed: int = 0) -> np.ndarray:
    """A dark speckled frame with one bright horizontal band (a retina) over 20 % of the rows."""
    image = _rng(seed).uniform(0.0, 0.15, (100, 120, 1)).astype(np.float32)
    image[40:60] += 0.6
    return image


def test_foreground_mask_finds_the_bright_band_and_nothing_in_a_flat_image() -> None:
    mask = foreground_mask(_band_image())
    assert mask[40:60].all() and not mask[:40].any() and not mask[60:].any()
    assert not foreground_mask(np.full((32, 32, 3), 0.5, dtype=np.float32)).any()


def test_foreground_crops_land_on_the_band_and_stay_reproducible() -> None:
    from dinomed.augment.backend import build_pipeline

    image = _band_image()
    params = {"size": (24, 24), "scale": (0.05, 0.15), "ratio": (0.75, 1.33)}
    plain = build_pipeline([Op("random_resized_crop", params=params, photometric=False)], 1)
    aware = build_pipeline([Op("random_resized_crop", params={**params, "foreground": 0.5}, photometric=False)], 1)

    def band_share(pipeline) -> float:  # share of crops that are at least (about) half band
        return float(np.mean([(pipeline(image, seed) > 0.35).mean() >= 0.45 for seed in range(200)]))

    assert band_share(aware) > 0.9 > 0.5 > band_share(plain)
    np.testing.assert_array_equal(aware(image, 7), aware(image, 7))
