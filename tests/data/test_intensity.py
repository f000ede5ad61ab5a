"""Normalisation to [0, 1] follows data.intensity; channel conversion matches Pillow's luminance."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dinomed.data.config import DataConfig
from dinomed.data.intensity import normalise, to_channels
from dinomed.data.readers import DataError


def _meta(**kw):
    return {"path": "x", "format": "PNG", "dtype": "uint8", "bit_depth": 8, "window": None, **kw}


def test_auto_uses_bit_depth():
    cfg = DataConfig()
    eight = normalise(np.array([[[0.0], [255.0]]]), _meta(), cfg)
    sixteen = normalise(np.array([[[256.0], [65535.0]]]), _meta(dtype="uint16", bit_depth=16), cfg)
    np.testing.assert_allclose(eight[..., 0], [[0, 1]])
    np.testing.assert_allclose(sixteen[..., 0], [[256 / 65535, 1]], rtol=1e-6)


def test_auto_uses_dicom_window_else_percentiles():
    cfg = DataConfig()
    hu = np.linspace(-1000, 1000, 101, dtype=np.float32).reshape(1, 101, 1)
    windowed = normalise(hu, _meta(format="DICOM", dtype="int16", window=(-160.0, 240.0)), cfg)
    assert windowed[0, 0, 0] == 0 and windowed[0, -1, 0] == 1
    np.testing.assert_allclose(windowed[0, 50, 0], 160 / 400)  # 0 HU
    spread = normalise(hu, _meta(format="NIfTI", dtype="float32"), cfg)
    lo, hi = np.percentile(hu, (0.5, 99.5))
    np.testing.assert_allclose(spread[0, 50, 0], (0 - lo) / (hi - lo), rtol=1e-5)


def test_fixed_window_percentile_and_inversion():
    values = np.array([[[0.0], [50.0], [100.0]]], dtype=np.float32)
    out = normalise(values, _meta(invert=True), DataConfig(intensity="window", window=(0.0, 100.0)))
    np.testing.assert_allclose(out[..., 0], [[1, 0.5, 0]])  # MONOCHROME1: low values display white
    out = normalise(values, _meta(), DataConfig(intensity="percentile", percentiles=(0.0, 100.0)))
    np.testing.assert_allclose(out[..., 0], [[0, 0.5, 1]])


def test_thermal_window_in_celsius():
    cfg = DataConfig(intensity="thermal", temperature_window=(20.0, 40.0))
    out = normalise(np.array([[[35.0], [10.0]]], np.float32), _meta(unit="degC"), cfg)
    np.testing.assert_allclose(out[..., 0], [[0.75, 0.0]])
    with pytest.raises(DataError, match="degC"):
        normalise(np.zeros((1, 1, 1), np.float32), _meta(), cfg)


def test_window_mode_needs_a_window():
    with pytest.raises(ValueError, match="needs window"):
        DataConfig(intensity="window")


def test_channel_conversion():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = to_channels(rgb.astype(np.float32) / 255, 1)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(gray[..., 0], expected, atol=1 / 255 + 1e-6)
    replicated = to_channels(gray, 3)
    assert replicated.shape == (8, 8, 3) and (replicated == gray).all()
