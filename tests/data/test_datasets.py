"""Folder / manifest / COCO datasets: records, labels, groups, frame expansion and bad-input handling."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from dinomed.data.config import DataConfig, PhantomConfig
from dinomed.data.datasets import CocoCropDataset, FolderDataset, ManifestDataset, build_dataset
from dinomed.data.readers import DataError


def _png(path, value=128, size=(12, 16), dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=dtype)).save(path)
    return path


def _manifest(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", value=60 * i)
    ds = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    assert len(ds) == 3 and ds.class_names is None and ds.labels() == [None] * 3
    sample = ds[2]
    assert sample["image"].shape == (12, 16, 1) and sample["image"].dtype == np.float32
    np.testing.assert_allclose(sample["image"], 120 / 255)
    assert sample["meta"]["modality"] == "oct" and "label" not in sample


def test_class_subfolders_become_labels_and_label_map_merges(tmp_path):
    for cls in ("NORMAL", "CNV", "DME"):
        _png(tmp_path / cls / "a.png")
    ds = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    assert ds.class_names == ["CNV", "DME", "NORMAL"]
    assert [ds.class_names[label] for label in ds.labels()] == ["CNV", "DME", "NORMAL"]
    merged = DataConfig(source="folder", root=str(tmp_path), label_map={"NORMAL": 0, "CNV": 1, "DME": 1})
    ds = FolderDataset(tmp_path, merged, "oct")
    assert ds.class_names == ["NORMAL", "CNV/DME"] and sorted(ds.labels()) == [0, 1, 1]


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no image files") as err:
        FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    assert str(tmp_path) in str(err.value)


def test_text_file_named_png_raises_or_is_skipped(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="bad.png"):
        FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    ds = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path), on_error="skip"), "oct")
    assert len(ds) == 1 and [p for p, _ in ds.skipped] == [str(tmp_path / "bad.png")]


def test_truncated_image_at_load_time_is_skipped_and_recorded(tmp_path):
    _png(tmp_path / "a.png", value=10)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "b.png")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])  # header intact: passes the cheap check
    _png(tmp_path / "c.png", value=30)
    strict = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    with pytest.raises(DataError, match="b.png"):
        strict[1]
    lenient = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path), on_error="skip"), "oct")
    assert lenient[1]["meta"]["path"].endswith("c.png")
    assert lenient.subset([1, 2])[0]["meta"]["path"].endswith("c.png")  # the next good item of the subset itself
    assert len(lenient.skipped) == 1 and lenient.skipped[0][0].endswith("b.png")


def test_manifest_with_renamed_group_masks_and_channels(tmp_path):
    rows = []
    for i in range(4):
        _png(tmp_path / "images" / f"{i}.png")
        mask = np.zeros((12, 16), np.uint8)
        mask[:4] = 255
        Image.fromarray(mask).save(_png(tmp_path / "masks" / f"{i}.png"))
        rows.append({"image": f"images/{i}.png", "mask": f"masks/{i}.png", "sequence": str(i // 2), "label": "ab"[i % 2]})
    cfg = DataConfig(source="manifest", manifest=str(_manifest(tmp_path / "index.csv", rows)),
                     columns={"group": "sequence"}, channels=3)
    ds = build_dataset(cfg, "endoscopy")
    assert isinstance(ds, ManifestDataset) and ds.groups() == ["0", "0", "1", "1"] and ds.class_names == ["a", "b"]
    sample = ds[0]
    assert sample["image"].shape == (12, 16, 3) and sample["mask"].dtype == np.int64
    assert set(np.unique(sample["mask"]).tolist()) == {0, 1} and sample["mask"][:4].all()


def test_json_manifest_with_split_and_depth(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "a_depth.png", value=1500, dtype=np.uint16)
    (tmp_path / "m.json").write_text(json.dumps([{"image": "a.png", "depth": "a_depth.png", "split": "test"}]))
    ds = ManifestDataset(tmp_path / "m.json", DataConfig(source="manifest", manifest="m.json", depth_scale=0.001), "endoscopy")
    sample = ds[0]
    np.testing.assert_allclose(sample["depth"], 1.5)  # 1500 mm -> 1.5 m
    assert sample["meta"]["split"] == "test"


def test_manifest_missing_columns(tmp_path):
    _png(tmp_path / "a.png")
    path = _manifest(tmp_path / "m.csv", [{"file": "a.png"}])
    with pytest.raises(DataError, match=r"missing column\(s\) 'image'; columns found: \['file'\]") as err:
        ManifestDataset(path, DataConfig(source="manifest", manifest=str(path)), "oct")
    assert "file" in str(err.value) and str(path) in str(err.value)
    path = _manifest(tmp_path / "m2.csv", [{"image": "a.png"}])
    with pytest.raises(DataError, match=r"'sequence' \(data.columns.group\)"):
        ManifestDataset(path, DataConfig(source="manifest", manifest=str(path), columns={"group": "sequence"}), "oct")


def test_manifest_path_outside_root(tmp_path):
    _png(tmp_path / "outside.png")
    (tmp_path / "data").mkdir()
    path = _manifest(tmp_path / "data" / "m.csv", [{"image": "../outside.png"}])
    with pytest.raises(DataError, match="leaves the data root .* set data.root to a folder above them, or list absolute paths"):
        ManifestDataset(path, DataConfig(source="manifest", manifest=str(path)), "oct")


def test_mask_size_differs_from_image(tmp_path):
    _png(tmp_path / "a.png", size=(12, 16))
    _png(tmp_path / "m.png", size=(10, 16))
    path = _manifest(tmp_path / "m.csv", [{"image": "a.png", "mask": "m.png"}])
    ds = ManifestDataset(path, DataConfig(source="manifest", manifest=str(path)), "endoscopy")
    with pytest.raises(DataError, match=r"size 16x10 differs from its image .*a.png \(16x12\)") as err:
        ds[0]
    assert err.value.path.endswith("m.png")


def test_label_absent_from_label_map(tmp_path):
    for name in ("a", "b"):
        _png(tmp_path / f"{name}.png")
    path = _manifest(tmp_path / "m.csv", [{"image": "a.png", "label": "CNV"}, {"image": "b.png", "label": "XYZ"}])
    cfg = DataConfig(source="manifest", manifest=str(path), label_map={"CNV": 0, "DME": 1})
    with pytest.raises(DataError, match="row 2: label 'XYZ' is not in data.label_map"):
        ManifestDataset(path, cfg, "oct")
    cfg.on_error = "skip"
    ds = ManifestDataset(path, cfg, "oct")
    assert len(ds) == 1 and ds.class_names == ["CNV", "DME"] and "XYZ" in ds.skipped[0][1]


def test_multiframe_dicom_and_nifti_expand_per_frame(tmp_path, dicom_file, nifti_file):
    ramp = np.arange(64, dtype=np.uint16).reshape(8, 8)
    dicom_file(tmp_path / "vol.dcm", np.stack([ramp * (i + 1) for i in range(3)]))
    nifti_file(tmp_path / "vol.nii.gz", np.zeros((8, 8, 4), np.float32))
    ds = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    assert len(ds) == 7
    assert sorted(set(ds.groups())) == ["vol.dcm", "vol.nii.gz"]  # frames of one volume stay together
    frames = [ds[i]["meta"]["frame"] for i in range(3)]
    assert frames == [0, 1, 2]
    image = ds[2]["image"]  # no VOI window in the file: 0.5-99.5 percentiles of the frame
    assert image.min() == 0.0 and image.max() == 1.0 and image[0, 0, 0] < image[4, 4, 0]


def test_coco_crops_with_padding_and_min_size(tmp_path):
    _png(tmp_path / "images" / "f.png", size=(100, 100))
    coco = {
        "images": [{"id": 1, "file_name": "f.png", "width": 100, "height": 100}],
        "categories": [{"id": 0, "name": "Person"}, {"id": 1, "name": "Car"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 20, 20, 10], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 0, "bbox": [90, 90, 20, 20], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 0, "bbox": [5, 5, 2, 2], "iscrowd": 0},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = CocoCropDataset(tmp_path / "ann.json", DataConfig(source="coco", annotations="a", coco_padding=0.1, coco_min_size=4), "thermal")
    assert ds.class_names == ["Person", "Car"] and ds.labels() == [1, 0]
    assert ds[0]["image"].shape == (12, 24, 1) and ds[0]["meta"]["box"] == [8, 19, 32, 31]
    assert ds[1]["meta"]["box"] == [88, 88, 100, 100]  # clipped to the frame
    assert ds.groups() == ["f.png", "f.png"]


def test_coco_missing_image(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "gone.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 0, "name": "Person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [0, 0, 5, 5]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match="image file not found") as err:
        CocoCropDataset(tmp_path / "ann.json", DataConfig(source="coco", annotations="a"), "thermal")
    assert err.value.path.endswith("gone.jpg") and "ann.json" in err.value.problem


def test_datasets_pickle_for_workers(tmp_path):
    _png(tmp_path / "a.png", value=77)
    ds = FolderDataset(tmp_path, DataConfig(source="folder", root=str(tmp_path)), "oct")
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[0]["image"], ds[0]["image"])
    assert pickle.loads(pickle.dumps(ds.subset([0])))[0]["meta"]["path"] == ds[0]["meta"]["path"]


def test_build_dataset_without_root_is_the_phantom():
    ds = build_dataset(DataConfig(channels=3, phantom=PhantomConfig(count=3, size=(32, 32))), "oct")
    assert type(ds).__name__ == "PhantomDataset" and len(ds) == 3 and ds[0]["image"].shape == (32, 32, 3)


def test_only_configs_without_any_path_use_the_phantom():
    assert DataConfig().uses_phantom and not DataConfig(root="/x").uses_phantom
    with pytest.raises(ValueError, match="source is phantom but data.root is set"):
        DataConfig(source="phantom", root="/x")
    assert not DataConfig(source="coco", annotations="a.json").uses_phantom  # COCO needs no root: not a phantom
    assert not DataConfig(source="manifest", manifest="m.csv").uses_phantom
    assert not DataConfig(source="folder", root="/x").uses_phantom


def test_source_needs_its_path():
    with pytest.raises(ValueError, match="needs manifest"):
        DataConfig(source="manifest")
