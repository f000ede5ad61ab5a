"""Synthetic phantoms: determinism, the sample contract, class-specific structure, calibration and the writer."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
from PIL import Image

from dinomed.data.phantoms import (
    DEPTH_PNG_SCALE,
    GROUP_SIZE,
    PHANTOM_CLASSES,
    PHANTOM_MASK_CLASSES,
    THERMAL_WINDOW_C,
    PhantomDataset,
    celsius_to_counts,
    counts_to_celsius,
    generate_phantom,
    write_phantom_dataset,
)

MODALITIES = sorted(PHANTOM_CLASSES)
CHANNELS = {"oct": 1, "thermal": 1, "endoscopy": 3, "natural": 3}


def _ring(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` of the mask but outside it."""
    grown = mask.copy()
    for _ in range(width):
        grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
    return grown & ~mask


@pytest.mark.parametrize("modality", MODALITIES)
def test_pure_function_of_seed_index_and_size(modality):
    a = generate_phantom(modality, 5, seed=3, size=(48, 64))
    b = generate_phantom(modality, 5, seed=3, size=(48, 64))
    for key in ("image", "mask") + (("depth",) if modality == "endoscopy" else ()):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["meta"] == b["meta"]
    assert not np.array_equal(a["image"], generate_phantom(modality, 5, seed=4, size=(48, 64))["image"])
    assert not np.array_equal(a["image"], generate_phantom(modality, 6, seed=3, size=(48, 64))["image"])


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_sample_contract(modality, size):
    for index in range(8):
        s = generate_phantom(modality, index, size=size)
        assert s["image"].shape == (*size, CHANNELS[modality]) and s["image"].dtype == np.float32
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0 and s["image"].std() > 0.02
        assert s["mask"].shape == size and s["mask"].dtype == np.int64
        assert s["mask"].max() < len(PHANTOM_MASK_CLASSES[modality])
        assert s["meta"]["class_name"] == PHANTOM_CLASSES[modality][s["label"]]
        assert s["meta"]["modality"] == modality and s["meta"]["group"] == f"{modality}-s0-p{index // GROUP_SIZE}"
        assert ("depth" in s) == (modality == "endoscopy")


@pytest.mark.parametrize("modality", MODALITIES)
def test_masks_mark_exactly_the_lesions_or_objects(modality):
    for index in range(16):
        s = generate_phantom(modality, index, size=(32, 32))
        values = set(np.unique(s["mask"]).tolist()) - {0}
        if modality in ("oct", "endoscopy"):  # mask value = class index; normal / no_polyp have no lesion
            assert values == ({s["label"]} if s["label"] else set()), (index, s["meta"]["class_name"])
        else:  # every frame shows its class's objects, labelled 1 + class index
            assert values == {s["label"] + 1}, (index, s["meta"]["class_name"])


@pytest.mark.parametrize("modality", MODALITIES)
def test_dataset_labels_groups_and_classes(modality):
    n = len(PHANTOM_CLASSES[modality])
    ds = PhantomDataset(modality, count=8 * n, size=(32, 32), seed=1)
    assert ds.class_names == PHANTOM_CLASSES[modality] and len(ds) == 8 * n
    assert set(ds.labels()) == set(range(n))
    assert [ds[i]["label"] for i in range(4)] == ds.labels()[:4]
    assert ds.groups()[0] == ds.groups()[GROUP_SIZE - 1] != ds.groups()[GROUP_SIZE]
    assert ds.has("mask") and ds.has("depth") == (modality == "endoscopy")
    assert PhantomDataset(modality, count=4, seed=2).groups()[0] != ds.groups()[0]  # other seed: other patients


def test_endoscopy_is_about_one_quarter_without_polyp():
    labels = PhantomDataset("endoscopy", count=400).labels()
    assert labels.count(0) == 100


@pytest.mark.parametrize("channels", [1, 3])
def test_dataset_converts_channels_and_pickles(channels):
    for modality in ("oct", "endoscopy"):
        ds = PhantomDataset(modality, count=4, size=(32, 32), channels=channels)
        clone = pickle.loads(pickle.dumps(ds))
        assert clone[1]["image"].shape == (32, 32, channels)
        np.testing.assert_array_equal(clone[1]["image"], ds[1]["image"])


def test_oct_fluid_is_dark_and_cnv_bright_against_surrounding_tissue():
    ds = PhantomDataset("oct", count=32, size=(128, 128))
    contrast = {2: [], 3: []}
    for i, label in enumerate(ds.labels()):
        if label in contrast:
            s = ds[i]
            lesion = s["mask"] == label
            contrast[label].append(s["image"][lesion].mean() - s["image"][_ring(lesion)].mean())
    assert max(contrast[2]) < -0.05, contrast[2]
    assert np.mean(contrast[3]) > 0.05, contrast[3]


def test_endoscopy_depth_is_metric_shading_falls_off_and_polyps_stand_out():
    for index in range(8):
        s = generate_phantom("endoscopy", index, size=(96, 96))
        depth, lum = s["depth"], s["image"].mean(-1)
        assert depth.dtype == np.float32 and 5.0 <= depth.min() and depth.max() <= 120.0
        near, far = depth < np.quantile(depth, 0.3), depth > np.quantile(depth, 0.7)
        assert lum[near].mean() > lum[far].mean() + 0.1  # light at the camera: inverse-square falloff
        if s["label"] == 1:
            polyp = s["mask"] == 1
            assert depth[polyp].mean() < depth[_ring(polyp)].mean()  # the polyp is raised off the wall


def test_thermal_calibration_round_trip_and_window():
    temps = np.array([-20.0, 0.0, 21.37, 36.6, 80.0], np.float32)
    np.testing.assert_allclose(counts_to_celsius(celsius_to_counts(temps)), temps, atol=0.006)
    s = generate_phantom("thermal", 3, size=(48, 48), raw=True)
    assert s["raw"].dtype == np.uint16
    gain, offset = s["meta"]["calibration"]["gain"], s["meta"]["calibration"]["offset"]
    lo, hi = THERMAL_WINDOW_C
    expected = np.clip((s["raw"].astype(np.float32) * gain + offset - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(s["image"][..., 0], expected, atol=1e-5)


def test_thermal_people_and_animals_are_warmer_than_their_surroundings():
    for index in range(12):
        s = generate_phantom("thermal", index, size=(96, 96))
        if s["meta"]["class_name"] in ("person", "animal"):
            body = s["mask"] > 0
            assert s["image"][body].mean() > s["image"][_ring(body)].mean()


@pytest.mark.parametrize("modality", MODALITIES)
def test_writer_output_is_readable_with_pil(modality, tmp_path):
    manifest = write_phantom_dataset(modality, tmp_path / modality, count=3, size=(32, 40), seed=2)
    with manifest.open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["image", "label", "mask", "depth", "group"]
        rows = list(reader)
    assert len(rows) == 3
    for i, row in enumerate(rows):
        sample = generate_phantom(modality, i, seed=2, size=(32, 40), raw=True)
        assert row["label"] == sample["meta"]["class_name"] and row["group"] == sample["meta"]["group"]
        pixels = np.array(Image.open(manifest.parent / row["image"]))
        assert pixels.dtype == sample["raw"].dtype  # 16-bit counts survive for thermal
        np.testing.assert_array_equal(pixels, sample["raw"])
        np.testing.assert_array_equal(np.array(Image.open(manifest.parent / row["mask"])), sample["mask"])
        if modality == "endoscopy":
            depth = np.array(Image.open(manifest.parent / row["depth"])).astype(np.float32) / DEPTH_PNG_SCALE
            np.testing.assert_allclose(depth, sample["depth"], atol=0.006)
        else:
            assert row["depth"] == ""


def test_unknown_modality_lists_the_valid_ones():
    with pytest.raises(ValueError, match="endoscopy.*natural.*oct.*thermal"):
        generate_phantom("xray", 0)
    with pytest.raises(ValueError, match="Valid modalities"):
        PhantomDataset("xray")
