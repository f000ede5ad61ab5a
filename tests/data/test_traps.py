"""Traps a new user fell into: a data root that silently became the phantom, absolute manifest paths, NaN voxels,
images smaller than a patch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dinomed
from dinomed.config import ConfigError
from dinomed.data.config import DataConfig
from dinomed.data.datasets import FolderDataset, ManifestDataset, describe_source
from dinomed.data.readers import DataError


def _png(path: Path, size: tuple[int, int] = (32, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)).save(path)
    return path


def test_a_data_path_selects_its_source_and_never_the_phantom(tmp_path: Path) -> None:
    recipe = dinomed.load_recipe("oct", overrides={"data.root": str(tmp_path)})  # the README's example, root alone
    assert recipe.data.source == "folder" and not recipe.data.uses_phantom
    assert dinomed.load_recipe("oct", overrides={"data.manifest": "m.csv"}).data.source == "manifest"
    assert dinomed.load_recipe("thermal", overrides={"data.annotations": "a.json"}).data.source == "coco"
    assert dinomed.load_recipe("oct").data.source == "phantom"
    with pytest.raises(ConfigError, match="source is phantom but data.root is set: .* set data.source=auto"):
        dinomed.load_recipe("oct", overrides={"data.source": "phantom", "data.root": str(tmp_path)})
    with pytest.raises(ConfigError, match="both data.manifest and data.annotations are set"):
        dinomed.load_recipe("oct", overrides={"data.manifest": "m.csv", "data.annotations": "a.json"})


def test_the_console_names_the_data_a_run_reads(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "scans" / f"{i}.png")
    cfg = DataConfig(root=str(tmp_path / "scans"))
    assert describe_source(cfg, "oct", 3) == f"Data: folder {tmp_path / 'scans'} (3 images)."
    assert describe_source(DataConfig(), "oct", 1024).startswith("Data: the built-in oct phantom (1024 synthetic")


def test_absolute_manifest_paths_are_taken_as_they_are(tmp_path: Path) -> None:
    image = _png(tmp_path / "export" / "scan.png")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([["image"], [str(image)], ["../export/scan.png"]])
    with pytest.raises(DataError, match=r"row 2: relative path '../export/scan.png' leaves the data root .*set "
                                        r"data.root to a folder above them, or list absolute paths"):
        ManifestDataset(manifest, DataConfig(manifest=str(manifest)), "oct")
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([["image"], [str(image)]])
    dataset = ManifestDataset(manifest, DataConfig(manifest=str(manifest)), "oct")
    assert dataset.records[0].image == str(image) and dataset[0]["image"].shape == (32, 32, 1)


def test_nan_voxels_become_zero_and_an_all_nan_slice_names_the_file(tmp_path: Path, nifti_file) -> None:
    volume = np.linspace(0, 100, 32 * 32 * 2, dtype=np.float32).reshape(32, 32, 2)
    volume[:4, :4, 0] = np.nan
    volume[5, 5, 0] = np.inf
    volume[:, :, 1] = np.nan
    nifti_file(tmp_path / "masked.nii.gz", volume)
    dataset = FolderDataset(tmp_path, DataConfig(root=str(tmp_path), intensity="percentile"), "oct")
    image = dataset[0]["image"]
    assert np.isfinite(image).all() and image[:4, :4].max() == 0.0 and image[5, 5] == 0.0 and image.max() > 0.9
    with pytest.raises(DataError, match=r"masked.nii.gz: all 1024 values are NaN or infinite"):
        dataset[1]


def test_an_image_smaller_than_a_patch_is_an_error_or_skipped(tmp_path: Path) -> None:
    _png(tmp_path / "ok.png")
    _png(tmp_path / "dot.png", (1, 1))
    dataset = FolderDataset(tmp_path, DataConfig(root=str(tmp_path)), "oct")
    names = [Path(r.image).name for r in dataset.records]
    with pytest.raises(DataError, match=r"dot.png: image is 1x1 px, smaller than data.min_size \(8 px\)"):
        dataset[names.index("dot.png")]
    skipping = FolderDataset(tmp_path, DataConfig(root=str(tmp_path), on_error="skip"), "oct")
    assert skipping[names.index("dot.png")]["meta"]["path"].endswith("ok.png") and skipping.skipped
