"""`pretrain` runs on every kind of data a user points it at, each with its modality preset (issue: data layer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dinomed.data.phantoms import write_phantom_dataset
from dinomed.api import pretrain

TINY = [
    "model.out_dim=128", "model.hidden_dim=64", "model.bottleneck_dim=32", "augment.global_size=32",
    "augment.local_size=16", "augment.local_crops=2", "data.num_workers=0", "train.batch_size=2",
    "train.epochs=1", "train.max_steps=2", "train.log_every=1", "optim.warmup_epochs=0",
]


def _pretrain(tmp_path: Path, recipe: str, *sets: str) -> None:
    run = pretrain(recipe, overrides=[*TINY, f"train.output_dir={tmp_path / 'runs'}", *sets], quick=True)
    assert run.metrics["finished"] and Path(run.backbone_source).is_file()


def test_folder_of_16_bit_thermal_pngs(tmp_path: Path) -> None:
    write_phantom_dataset("thermal", tmp_path / "thermal", count=4, size=(48, 48))
    _pretrain(tmp_path, "thermal", "data.source=folder", f"data.root={tmp_path / 'thermal' / 'images'}",
              "data.intensity=thermal")


def test_dicom_folder(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    folder = tmp_path / "dicom"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    _pretrain(tmp_path, "oct", "data.source=folder", f"data.root={folder}")


def test_nifti_volume(tmp_path: Path) -> None:
    from nibabel.testing import data_path

    folder = tmp_path / "nifti"
    folder.mkdir()
    shutil.copy(Path(data_path) / "example4d.nii.gz", folder)
    _pretrain(tmp_path, "oct", "data.source=folder", f"data.root={folder}")


@pytest.mark.realdata
def test_cvc_clinicdb_frames(tmp_path: Path, shared_data: Path) -> None:
    _pretrain(tmp_path, "endoscopy", "data.source=manifest",
              f"data.manifest={shared_data / 'endoscopy/cvc-clinicdb/index.csv'}", "data.columns={group: sequence}")


@pytest.mark.realdata
def test_hit_uav_object_crops(tmp_path: Path, shared_data: Path) -> None:
    _pretrain(tmp_path, "thermal", "data.source=coco",
              f"data.annotations={shared_data / 'thermal/hit-uav/annotations.json'}")
