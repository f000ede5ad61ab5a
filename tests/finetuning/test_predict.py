"""Prediction reads files through the training data layer and refuses inputs whose intensity scale differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinomed.data.intensity import LUMA
from dinomed.data.phantoms import PhantomDataset, write_phantom_dataset
from dinomed.api import finetune, load_model
from dinomed.finetuning.predict import read_input


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny: list[str]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    quick = [*tiny, "finetune.epochs=1"]
    return {m: finetune(m, task="seg", overrides=quick, out=root / m).run_dir for m in ("oct", "thermal")}


def test_thermal_16bit_file_reads_as_in_training(runs: dict[str, Path], tmp_path: Path) -> None:
    """A 16-bit radiometric PNG goes through counts -> degC -> temperature window, exactly the phantom's image."""
    manifest = write_phantom_dataset("thermal", tmp_path, count=2, size=(32, 32))
    model = load_model(runs["thermal"])
    path = manifest.parent / "images" / "thermal_0_00001.png"
    assert Image.open(path).mode.startswith("I")  # really 16 bit on disk
    expected = PhantomDataset("thermal", 2, (32, 32), 0, channels=1)[1]["image"]
    np.testing.assert_allclose(read_input(path, model.info), expected, atol=1e-5)
    mask = model.predict(path)
    assert mask.shape == (32, 32) and mask.dtype == np.int64


def test_thermal_8bit_rendering_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "agc.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(path)
    with pytest.raises(ValueError, match="8-bit"):
        load_model(runs["thermal"]).predict(path)


def test_bit_depth_mismatch_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(path)
    with pytest.raises(ValueError, match=r"sixteen.png: 16-bit image, but the model was trained on 8-bit"):
        load_model(runs["oct"]).predict(path)


def test_rgb_file_is_converted_like_training(runs: dict[str, Path], tmp_path: Path) -> None:
    """A one-channel model given an RGB file gets its BT.601 luminance, the data layer's conversion."""
    rgb = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    model = load_model(runs["oct"])
    np.testing.assert_allclose(read_input(path, model.info)[..., 0], (rgb / 255.0).astype(np.float32) @ LUMA, atol=1e-5)
    assert model.predict(path).shape == (32, 40)
