"""The preview grid, the --data resolution and the ``augment-preview`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dinomed.augment.multicrop import build_multicrop
from dinomed.augment.preview import data_settings, save_preview
from tests.augment.conftest import TinyDataset, small_config


@pytest.mark.parametrize(("modality", "channels"), [("oct", 1), ("endoscopy", 3)])
def test_save_preview_writes_a_png_grid(tmp_path: Path, modality: str, channels: int) -> None:
    out = save_preview(
        TinyDataset(count=3, channels=channels), build_multicrop(modality, small_config(), channels),
        tmp_path / "grid.png", samples=2,
    )
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > png.height  # 2 rows x (original + 4 crops)


def test_data_settings_pick_manifest_or_folder(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image\n")
    assert data_settings(manifest) == {"data.source": "manifest", "data.manifest": str(manifest)}
    assert data_settings(tmp_path) == {"data.source": "folder", "data.root": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="--data .*missing: expected an image folder or a .csv/.json manifest"):
        data_settings(tmp_path / "missing")


def test_cli_augment_preview(tmp_path: Path) -> None:
    pytest.importorskip("dinomed.data.datasets", reason="build_dataset (dinomed/data/datasets.py) not written yet")
    from dinomed.cli import main

    out = tmp_path / "oct.png"
    main([
        "augment-preview", "--recipe", "oct", "--quick", "--set", "data.phantom.count=4",
        "--set", "data.phantom.size=[64,64]", "--out", str(out), "--samples", "2",
    ])
    assert out.is_file() and out.stat().st_size > 1000
