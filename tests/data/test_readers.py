"""Readers keep raw units, bit depth and frames; bad files fail with a DataError naming the file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile
from PIL import Image

from dinomed.data.readers import (
    DataError,
    count_frames,
    file_format,
    read_dicom,
    read_image,
    read_mask,
    read_nifti,
    read_raster,
    read_thermal,
)


def test_16bit_png_is_not_truncated(tmp_path):
    counts = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(counts).save(tmp_path / "oct16.png")
    image, meta = read_raster(tmp_path / "oct16.png")
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    np.testing.assert_array_equal(image[..., 0], counts.astype(np.float32))
    assert meta["dtype"] == "uint16" and meta["bit_depth"] == 16


def test_8bit_rgb_jpeg_and_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    png, meta = read_raster(tmp_path / "a.png")
    np.testing.assert_array_equal(png, rgb.astype(np.float32))
    assert meta["bit_depth"] == 8 and meta["format"] == "PNG"
    jpg, meta = read_raster(tmp_path / "a.jpg")
    assert jpg.shape == (16, 24, 3) and meta["format"] == "JPEG"


def test_16bit_rgb_png_refused_rather_than_truncated(tmp_path, png16_rgb_file):
    path = png16_rgb_file(tmp_path / "rgb16.png", np.full((4, 5, 3), 40000, dtype=np.uint16))
    with pytest.raises(DataError, match="16-bit colour PNG") as err:
        read_raster(path)
    assert err.value.path == str(path)


def test_tiff_16bit_and_planar(tmp_path):
    counts = np.random.default_rng(1).integers(0, 65535, (3, 20, 10), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", counts, photometric="rgb", planarconfig="separate")
    image, meta = read_raster(tmp_path / "planar.tif")
    assert image.shape == (20, 10, 3) and meta["bit_depth"] == 16 and meta["dtype"] == "uint16"
    np.testing.assert_array_equal(image, np.moveaxis(counts, 0, -1).astype(np.float32))


def test_masks_become_class_ids(tmp_path):
    binary = np.zeros((8, 8), dtype=np.uint8)
    binary[2:5, 2:5] = 255
    Image.fromarray(binary).save(tmp_path / "grey.png")
    Image.fromarray(binary > 0).save(tmp_path / "onebit.png")
    palette = Image.fromarray((binary // 255 * 3).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "palette.png")
    for name, top in (("grey.png", 1), ("onebit.png", 1), ("palette.png", 3)):
        mask = read_mask(tmp_path / name)
        assert mask.dtype == np.int64 and mask.shape == (8, 8)
        assert set(np.unique(mask).tolist()) == {0, top}, name


def test_colour_mask_is_an_error(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour mask"):
        read_mask(tmp_path / "colour.png")


def test_dicom_rescale_window_and_meta(tmp_path, dicom_file):
    stored = np.full((6, 7), 1000, dtype=np.uint16)
    path = dicom_file(tmp_path / "ct.dcm", stored, rescale=(2.0, -1024.0), window=(40, 400))
    image, meta = read_dicom(path)
    assert image.shape == (6, 7, 1)
    np.testing.assert_allclose(image, 976.0)  # 2 * 1000 - 1024 HU
    assert meta["window"] == pytest.approx((40 - 0.5 - 399 / 2, 40 - 0.5 + 399 / 2))  # PS3.3 C.11.2.1.2
    assert meta["format"] == "DICOM" and meta["dtype"] == "uint16" and meta["invert"] is False


def test_dicom_multiframe_reads_one_frame(tmp_path, dicom_file):
    volume = np.stack([np.full((5, 4), 100 * (i + 1), dtype=np.uint16) for i in range(3)])
    path = dicom_file(tmp_path / "oct.dcm", volume)
    assert count_frames(path) == 3
    for i in range(3):
        image, meta = read_dicom(path, frame=i)
        assert meta["frame"] == i and meta["n_frames"] == 3
        np.testing.assert_array_equal(image[..., 0], volume[i])
    with pytest.raises(DataError, match="3 frames"):
        read_dicom(path)
    with pytest.raises(DataError, match="out of range"):
        read_dicom(path, frame=3)


def test_dicom_monochrome1_flagged_for_inversion(tmp_path, dicom_file):
    path = dicom_file(tmp_path / "cr.dcm", np.zeros((4, 4), np.uint16), photometric="MONOCHROME1")
    assert read_dicom(path)[1]["invert"] is True


def test_dicom_without_pixel_data(tmp_path, dicom_file):
    path = dicom_file(tmp_path / "sr.dcm", np.zeros((4, 4), np.uint16), pixel_data=False)
    with pytest.raises(DataError, match="no pixel data") as err:
        count_frames(path)
    assert str(path) in str(err.value)


def test_text_file_named_dcm_or_png(tmp_path):
    for name in ("notes.dcm", "notes.png"):
        path = tmp_path / name
        path.write_text("this is not an image")
        with pytest.raises(DataError) as err:
            read_image(path)
        assert str(path) in str(err.value)


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_raster(tmp_path / "cut.png")


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unsupported file type"):
        file_format(tmp_path / "x.bmp")
    with pytest.raises(DataError, match="file not found"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nifti_slices_along_axis(tmp_path, nifti_file, axis):
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = nifti_file(tmp_path / "v.nii.gz", volume)
    assert count_frames(path, nifti_axis=axis) == volume.shape[axis]
    image, meta = read_nifti(path, frame=2, axis=axis)
    np.testing.assert_array_equal(image[..., 0], np.take(volume, 2, axis=axis))
    assert meta["slice_index"] == 2 and meta["slice_axis"] == axis and meta["dtype"] == "int16"


def test_nifti_4d_frame_index(tmp_path, nifti_file):
    volume = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype(np.float32)
    path = nifti_file(tmp_path / "v4.nii", volume)
    assert count_frames(path) == 10
    image, meta = read_nifti(path, frame=7)  # volume 1, slice 2
    np.testing.assert_allclose(image[..., 0], volume[:, :, 2, 1])
    assert (meta["volume_index"], meta["slice_index"]) == (1, 2)


def test_nifti_unexpected_dimensionality(tmp_path, nifti_file):
    path = nifti_file(tmp_path / "v5.nii", np.zeros((2, 2, 2, 2, 2), np.float32))
    with pytest.raises(DataError, match="expected a 2D, 3D or 4D NIfTI") as err:
        count_frames(path)
    assert str(path) in str(err.value)


def test_thermal_counts_to_celsius(tmp_path):
    counts = np.array([[30815, 29315]], dtype=np.uint16)  # 0.01 K per count: 35 degC and 20 degC
    tifffile.imwrite(tmp_path / "t.tif", counts)
    celsius, meta = read_thermal(tmp_path / "t.tif", gain=0.01, offset=-273.15)
    np.testing.assert_allclose(celsius[..., 0], [[35.0, 20.0]], atol=1e-3)
    assert meta["unit"] == "degC" and meta["calibration"] == (0.01, -273.15)


def test_thermal_refuses_8bit_rendering(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "t8.png")
    with pytest.raises(DataError, match="radiometric thermal needs"):
        read_thermal(tmp_path / "t8.png", gain=0.01, offset=-273.15)


def test_data_error_pickles_for_workers(tmp_path):
    err = pickle.loads(pickle.dumps(DataError(tmp_path / "a.png", "broken")))
    assert isinstance(err, ValueError) and err.path == str(tmp_path / "a.png") and err.problem == "broken"
