"""Every reader and dataset type on real files: CVC-ClinicDB, HIT-UAV, OCT B-scans, pydicom/nibabel samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dinomed.data.config import DataConfig
from dinomed.data.datasets import build_dataset
from dinomed.data.readers import count_frames, read_dicom, read_nifti
from dinomed.data.splits import make_splits

pytestmark = pytest.mark.realdata

PYDICOM_FILES = Path(__import__("pydicom").data.__file__).parent / "test_files"  # shipped in the wheel, offline


def _no_group_leak(dataset, splits) -> None:
    groups = dataset.groups()
    owners = [{groups[i] for i in splits[name]} for name in ("train", "val", "test")]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert set(splits["labelled"]) <= set(splits["train"])


def test_cvc_clinicdb_manifest_with_sequences_and_masks(shared_data):
    cfg = DataConfig(source="manifest", manifest=str(shared_data / "endoscopy/cvc-clinicdb/index.csv"),
                     columns={"group": "sequence"}, channels=3)
    ds = build_dataset(cfg, "endoscopy")
    assert len(ds) == 612 and ds.has("mask") and len(set(ds.groups())) == 29
    sample = ds[0]
    assert sample["image"].shape == (288, 384, 3) and 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert set(np.unique(sample["mask"]).tolist()) == {0, 1} and sample["meta"]["group"] == "1"
    _no_group_leak(ds, make_splits(ds, seed=0))


def test_oct_manifest_labels_and_patient_groups(shared_data):
    cfg = DataConfig(source="manifest", manifest=str(shared_data / "oct/index.csv"), columns={"group": "patient_id"})
    ds = build_dataset(cfg, "oct")
    assert len(ds) == 189 and ds.class_names == ["AMD", "CNV", "DME", "DRUSEN", "NORMAL", "VID"]
    sample = ds[0]
    assert sample["image"].shape[-1] == 1 and sample["meta"]["bit_depth"] == 8 and "label" in sample
    splits = make_splits(ds, labelled=12, seed=0)
    _no_group_leak(ds, splits)
    assert {ds.records[i].label for i in splits["labelled"]} == set(range(6))  # one per class at least


def test_hit_uav_coco_crops(shared_data):
    root = shared_data / "thermal/hit-uav"
    ds = build_dataset(DataConfig(source="coco", annotations=str(root / "annotations.json")), "thermal")
    assert ds.class_names == ["Person", "Car", "Bicycle", "OtherVehicle", "DontCare"]
    assert 1500 < len(ds) <= 1984 and len(set(ds.groups())) <= 240
    sample = ds[0]
    x0, y0, x1, y1 = sample["meta"]["box"]
    assert sample["image"].shape == (y1 - y0, x1 - x0, 1) and sample["meta"]["split"] in ("train", "val", "test")


def test_pydicom_ct_and_mr_samples():
    ct, meta = read_dicom(PYDICOM_FILES / "CT_small.dcm")
    assert ct.shape == (128, 128, 1) and meta["rescale"] == (1.0, -1024.0)
    assert -1024 <= ct.min() and ct.max() < 2000  # stored 128..2191, in HU after the intercept
    mr, meta = read_dicom(PYDICOM_FILES / "MR_small.dcm")
    assert mr.shape == (64, 64, 1) and meta["window"] == pytest.approx((600 - 0.5 - 1599 / 2, 600 - 0.5 + 1599 / 2))


def test_pydicom_multiframe_samples():
    assert count_frames(PYDICOM_FILES / "rtdose.dcm") == 15
    dose, meta = read_dicom(PYDICOM_FILES / "rtdose.dcm", frame=14)
    assert dose.shape == (10, 10, 1) and meta["n_frames"] == 15
    rgb, meta = read_dicom(PYDICOM_FILES / "SC_rgb_rle_2frame.dcm", frame=1)  # RLE-compressed colour
    assert rgb.shape == (100, 100, 3) and meta["photometric"] == "RGB"


def test_nibabel_samples():
    from nibabel.testing import data_path

    four_d = Path(data_path) / "example4d.nii.gz"
    assert count_frames(four_d) == 24 * 2
    image, meta = read_nifti(four_d, frame=30)
    assert image.shape == (128, 96, 1) and (meta["volume_index"], meta["slice_index"]) == (1, 6)
    anatomical, meta = read_nifti(Path(data_path) / "anatomical.nii", frame=5, axis=0)
    assert anatomical.shape == (41, 25, 1) and meta["slice_axis"] == 0


def test_folder_of_real_dicom_and_nifti(tmp_path):
    from nibabel.testing import data_path

    for source in (PYDICOM_FILES / "CT_small.dcm", PYDICOM_FILES / "rtdose.dcm", Path(data_path) / "anatomical.nii"):
        shutil.copy(source, tmp_path / source.name)
    ds = build_dataset(DataConfig(source="folder", root=str(tmp_path), channels=3), "natural")
    assert len(ds) == 1 + 15 + 25 and len(set(ds.groups())) == 3
    for index in (0, 1, len(ds) - 1):
        sample = ds[index]
        assert sample["image"].shape[-1] == 3 and 0 <= sample["image"].min() <= sample["image"].max() <= 1
