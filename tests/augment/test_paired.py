"""Paired fine-tuning augmentation: masks and depth stay aligned with the image; presets' rules are kept."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dinomed.augment.config import AugmentConfig
from dinomed.augment.multicrop import denormalize
from dinomed.augment.paired import build_paired_transform

CHANNELS = {"oct": 1, "endoscopy": 3, "thermal": 1, "natural": 3}


def _blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random blobs in [0, 1]: large regions so a threshold gives a mask with long, clean edges."""
    noise = np.random.default_rng(seed).random(shape)
    smooth = ndimage.gaussian_filter(noise, sigma=min(shape) / 10)
    return ((smooth - smooth.min()) / np.ptp(smooth)).astype(np.float32)


@pytest.mark.parametrize("modality", sorted(CHANNELS))
def test_mask_and_depth_follow_the_image(modality: str) -> None:
    """A mask thresholded from the image (and depth equal to it) still match the image after augmentation."""
    grey = _blobs((48, 64))
    image = np.repeat(grey[..., None], CHANNELS[modality], axis=-1)
    mask, depth = (grey > 0.5).astype(np.int64), 1.0 + grey
    transform = build_paired_transform(modality, AugmentConfig(strength=0.0), 32, CHANNELS[modality])
    moved_any = False
    for seed in range(12):
        out = transform(image, seed=seed, mask=mask, depth=depth)
        seen = denormalize(out["image"], modality).mean(0).numpy()
        inside = out["depth"].numpy() > 0  # pixels a rotation filled are 0 in every target
        agree = ((seen > 0.5) == (out["mask"].numpy() == 1))[inside].mean()
        assert agree > 0.95, f"seed {seed}: mask agrees with the image on only {agree:.1%} of pixels"
        np.testing.assert_allclose(out["depth"].numpy()[inside] - 1.0, seen[inside], atol=0.15)
        moved_any |= not np.allclose(seen, ndimage.zoom(grey, (32 / 48, 32 / 64), order=1), atol=0.05)
    assert moved_any, "no seed changed the geometry"


def test_photometric_ops_leave_targets_alone() -> None:
    """Strength changes the image only: the same seed gives the same mask at strength 0 and 1."""
    grey = _blobs((40, 40), seed=1)
    image, mask = np.repeat(grey[..., None], 3, -1), (grey > 0.4).astype(np.int64)
    weak = build_paired_transform("endoscopy", AugmentConfig(strength=0.0), 32, 3)
    strong = build_paired_transform("endoscopy", AugmentConfig(strength=1.0), 32, 3)
    differs = False
    for seed in range(6):
        a, b = weak(image, seed, mask=mask), strong(image, seed, mask=mask)
        assert np.array_equal(a["mask"].numpy(), b["mask"].numpy())
        differs |= not np.allclose(a["image"].numpy(), b["image"].numpy())
    assert differs, "strength 1 never changed a pixel value"


def test_oct_never_flips_vertically() -> None:
    """Bright vitreous-side top, dark bottom: OCT's preset may flip left-right and tilt, never turn upside down."""
    image = np.zeros((32, 32, 1), np.float32)
    image[:16] = 1.0
    mask = (image[..., 0] > 0).astype(np.int64)
    transform = build_paired_transform("oct", AugmentConfig(), 32, 1)
    for seed in range(40):
        out = transform(image, seed, mask=mask)["mask"].numpy()
        assert out[:8].mean() > out[-8:].mean(), f"seed {seed} turned the B-scan upside down"


def test_same_seed_same_sample_and_shape_check() -> None:
    grey = _blobs((24, 24))
    transform = build_paired_transform("endoscopy", AugmentConfig(), 16, 3)
    image = np.repeat(grey[..., None], 3, -1)
    first, again = transform(image, 5, mask=grey > 0.5), transform(image, 5, mask=grey > 0.5)
    assert all(np.array_equal(first[k].numpy(), again[k].numpy()) for k in first)
    with pytest.raises(ValueError, match=r"mask of shape \(20, 24\) does not match"):
        transform(image, 5, mask=np.zeros((20, 24)))
