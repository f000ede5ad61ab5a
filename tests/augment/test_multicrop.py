"""Multi-crop, the dataset wrapper and the eval transform, swept over every registered preset."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dinomed.augment.modalities import available_modalities, get_preset
from dinomed.augment.multicrop import (
    MultiCrop,
    MultiCropDataset,
    build_eval_transform,
    build_multicrop,
    denormalize,
    resolve_scales,
)
from tests.augment.conftest import CHANNELS, TinyDataset, small_config

GEOMETRY = ("hflip_p", "vflip_p", "rotate_p")


def _geometry_off(modality: str) -> dict[str, float]:
    names = {f.name for f in dataclasses.fields(get_preset(modality))}
    return {name: 0.0 for name in GEOMETRY if name in names}


def _image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("modality", available_modalities())
def test_registry_sweep_shapes_dtype_determinism(modality: str, channels: int) -> None:
    multicrop = build_multicrop(modality, small_config(), channels)
    image = _image((40, 56, channels))
    crops = multicrop(image, seed=3)
    assert [tuple(c.shape) for c in crops] == [(channels, 32, 32)] * 2 + [(channels, 16, 16)] * 2
    assert all(c.dtype == torch.float32 and torch.isfinite(c).all() for c in crops)
    assert all(torch.equal(a, b) for a, b in zip(crops, multicrop(image, seed=3)))
    assert any(not torch.equal(a, b) for a, b in zip(crops, multicrop(image, seed=4)))
    for crop in crops:  # normalised by the preset's constants: denormalised values are back in [0, 1]
        pixels = denormalize(crop, modality)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


@pytest.mark.parametrize("modality", available_modalities())
def test_normalisation_uses_preset_constants(modality: str) -> None:
    channels = CHANNELS[modality]
    cfg = small_config(strength=0.0, params=_geometry_off(modality))
    crops = build_multicrop(modality, cfg, channels)(np.full((40, 40, channels), 0.5, np.float32), seed=0)
    mean, std = get_preset(modality).normalization(channels)
    expected = (0.5 - torch.tensor(mean)) / torch.tensor(std)
    for crop in crops:
        assert torch.allclose(crop, expected.view(-1, 1, 1).expand_as(crop), atol=1e-5)


@pytest.mark.parametrize("modality", available_modalities())
def test_strength_zero_is_crops_only(modality: str) -> None:
    channels = CHANNELS[modality]
    image = _image((48, 48, channels), seed=1)
    multicrop = build_multicrop(modality, small_config(strength=0.0, params=_geometry_off(modality)), channels)
    assert all(not op.photometric for view in multicrop.views for op in view)
    pure = MultiCrop([v[:1] for v in multicrop.views], channels, multicrop.mean, multicrop.std, 2)
    full = build_multicrop(modality, small_config(params=_geometry_off(modality)), channels)
    changed = False
    for seed in range(4):
        reference = pure(image, seed)
        assert all(torch.equal(a, b) for a, b in zip(multicrop(image, seed), reference))
        changed |= any(not torch.equal(a, b) for a, b in zip(full(image, seed), reference))
    assert changed, "at strength 1 the photometric ops must change some crop"


def _top_minus_bottom(crop: np.ndarray) -> float:
    third = crop.shape[0] // 3
    return float(crop[:third].mean() - crop[-third:].mean())


def test_oct_never_flips_vertically() -> None:
    ramp = np.linspace(0.1, 0.9, 96, dtype=np.float32)[:, None, None] * np.ones((96, 96, 1), np.float32)
    oct_crops = build_multicrop("oct", small_config(local_crops=4), 1)
    for seed in range(40):
        assert all(_top_minus_bottom(c) < 0 for c in oct_crops.crops(ramp, seed)), f"seed {seed}"
    # positive control: the same check catches a preset that does flip vertically
    flipping = build_multicrop("endoscopy", small_config(params={"vflip_p": 1.0, "rotate_p": 0.0}), 1)
    assert all(_top_minus_bottom(c) > 0 for c in flipping.crops(ramp, 0))


def test_recipe_scales_win_over_preset_defaults() -> None:
    thermal = get_preset("thermal")
    assert resolve_scales(small_config(), thermal) == (thermal.global_scale, thermal.local_scale)
    assert resolve_scales(small_config(local_scale=(0.05, 0.2)), thermal)[1] == (0.05, 0.2)


def test_oct_and_endoscopy_crops_are_foreground_aware_unless_the_recipe_says_otherwise() -> None:
    def crop_params(modality: str, **kwargs: Any) -> list[dict]:
        return [view[0].params for view in build_multicrop(modality, small_config(**kwargs), 1).views]

    assert all(p["foreground"] == 0.3 for p in crop_params("oct"))
    assert all(p["foreground"] == 0.3 for p in crop_params("endoscopy"))
    assert all("foreground" not in p for p in crop_params("oct", foreground=0.0))
    assert all("foreground" not in p for p in crop_params("thermal"))
    assert all(p["foreground"] == 0.2 for p in crop_params("thermal", foreground=0.2))


def test_small_and_non_square_images_are_upscaled() -> None:
    crops = build_multicrop("natural", small_config(), 3)(_image((9, 20, 3)), seed=0)
    assert tuple(crops[0].shape) == (3, 32, 32) and tuple(crops[-1].shape) == (3, 16, 16)


def test_wrong_channel_count_is_explained() -> None:
    with pytest.raises(ValueError, match=r"expected an image of shape \(H, W, 3\) \(data.channels = 3\), got \(8, 8, 1\)"):
        build_multicrop("endoscopy", small_config(), 3)(_image((8, 8, 1)), seed=0)


def test_dataset_seeds_by_epoch_and_pickles() -> None:
    data = MultiCropDataset(TinyDataset(count=3, channels=1), build_multicrop("oct", small_config(), 1), seed=5)
    first = data[1]
    assert all(torch.equal(a, b) for a, b in zip(first, data[1]))
    data.set_epoch(1)
    assert any(not torch.equal(a, b) for a, b in zip(first, data[1]))
    clone = pickle.loads(pickle.dumps(data))
    assert all(torch.equal(a, b) for a, b in zip(clone[2], data[2]))


def test_dataloader_worker_batches_match_main_process() -> None:
    data = MultiCropDataset(TinyDataset(count=4, channels=3), build_multicrop("endoscopy", small_config(), 3))
    batch = next(iter(DataLoader(data, batch_size=4, num_workers=1)))
    assert len(batch) == 4 and tuple(batch[0].shape) == (4, 3, 32, 32)
    assert torch.equal(batch[2][3], data[3][2])


def test_eval_transform_resizes_image_mask_and_depth() -> None:
    transform = build_eval_transform("endoscopy", (24, 40), 3)
    image = _image((30, 50, 3))
    mask = np.random.default_rng(0).choice([0, 3, 7], size=(30, 50)).astype(np.int64)
    out = transform(image, mask=mask, depth=np.full((30, 50), 12.5, np.float32))
    assert tuple(out["image"].shape) == (3, 24, 40) and out["image"].dtype == torch.float32
    assert out["mask"].dtype == torch.int64 and set(out["mask"].unique().tolist()) <= {0, 3, 7}
    assert tuple(out["depth"].shape) == (24, 40) and torch.allclose(out["depth"], torch.tensor(12.5))
    assert torch.allclose(denormalize(out["image"], "endoscopy").mean(), torch.tensor(float(image.mean())), atol=0.02)
    assert set(build_eval_transform("oct", 16, 1)(_image((20, 20, 1)))) == {"image"}
