"""File readers: one function per format, each returning ``(array, meta)`` with the array (H, W, C) float32.

Values stay in raw / physical units (8- or 16-bit counts, Hounsfield units after the DICOM modality LUT, NIfTI
values after ``scl_slope``/``scl_inter``, degrees Celsius for radiometric thermal); :mod:`dinomed.data.intensity`
maps them to [0, 1] afterwards, using what the reader put in ``meta`` (original dtype, bit depth, the DICOM VOI
window, MONOCHROME1 inversion). Keeping the two steps apart means a 16-bit OCT scan is never truncated to 8 bits
on the way in, and a recipe can change the window without re-reading files.

MONAI's ``LoadImage`` is not used here: its Pillow reader returns images in (W, H) order and 16-bit PNGs as
int32 (the original dtype is lost), and it cannot read one frame of a multi-frame DICOM. pydicom and nibabel are
called directly so a frame/slice is decoded on its own.

Every failure raises :class:`DataError` naming the file and the problem.

Example::

    image, meta = read_image("scan.dcm", frame=3)   # (H, W, 1) float32 in HU, meta["window"] from the VOI LUT
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

Meta = dict[str, Any]

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class DataError(ValueError):
    """A file that cannot be used: ``path`` names it, ``problem`` says what is wrong and what was expected."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survives the trip back from DataLoader workers
        return DataError, (self.path, self.problem)


def file_format(path: str | Path) -> str:
    """``"raster"``, ``"dicom"`` or ``"nifti"`` from the file name; anything else is a :class:`DataError`."""
    name = Path(path).name.lower()
    for fmt, suffixes in (("nifti", NIFTI_SUFFIXES), ("dicom", DICOM_SUFFIXES), ("raster", RASTER_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    valid = list(RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)
    raise DataError(path, f"unsupported file type; expected one of {valid}")


def _to_hwc(array: np.ndarray, path: str | Path) -> np.ndarray:
    """(H, W) -> (H, W, 1); alpha dropped; anything but 1 or 3 channels is an error."""
    if array.ndim == 2:
        return array[..., None]
    if array.ndim == 3 and array.shape[-1] in (1, 3):
        return array
    if array.ndim == 3 and array.shape[-1] in (2, 4):  # LA / RGBA: alpha is not image content
        return array[..., : array.shape[-1] - 1]
    raise DataError(path, f"expected a 2D image with 1 or 3 channels, got array shape {array.shape}")


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from the PNG IHDR chunk (byte 24); Pillow hides it for colour images."""
    with path.open("rb") as fh:
        header = fh.read(25)
    return header[24] if len(header) == 25 and header[:8] == b"\x89PNG\r\n\x1a\n" else None


def _read_pil(path: Path) -> tuple[np.ndarray, Meta]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode, fmt = img.mode, img.format
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
            array = np.array(img)
    except UnidentifiedImageError:
        raise DataError(path, "not an image Pillow can identify (wrong extension, or not an image file at all)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f"cannot decode the image, the file is truncated or corrupt ({err})") from None
    bits = _png_bit_depth(path) if fmt == "PNG" else None
    if bits == 16 and array.dtype == np.uint8:
        raise DataError(path, "16-bit colour PNG: Pillow would truncate it to 8 bits; save it as 16-bit TIFF instead")
    if mode == "1":
        array, bits = array.astype(np.uint8), 1
    elif bits == 16 and array.dtype != np.uint16:  # mode "I": 16-bit grey held in int32
        array = array.astype(np.uint16)
    return array, {"format": fmt, "mode": mode, "bit_depth": bits or array.dtype.itemsize * 8}


def _read_tiff(path: Path) -> tuple[np.ndarray, Meta]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            bits = int(page.bitspersample)
            array = tif.series[0].asarray()
    except Exception as err:  # tifffile raises many types (TiffFileError, ValueError, struct.error ...)
        raise DataError(path, f"cannot read the TIFF ({type(err).__name__}: {err})") from None
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    return array, {"format": "TIFF", "mode": None, "bit_depth": bits}


def read_raster(path: str | Path) -> tuple[np.ndarray, Meta]:
    """PNG / JPEG / TIFF (8, 16 bit or float) as (H, W, C) float32 counts; ``meta`` keeps dtype and bit depth."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    reader = _read_tiff if path.suffix.lower() in (".tif", ".tiff") else _read_pil
    array, meta = reader(path)
    meta.update(path=str(path), dtype=str(array.dtype), shape=tuple(array.shape))
    return _to_hwc(array, path).astype(np.float32), meta


def _dcmread(path: Path, **kwargs: Any) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return pydicom.dcmread(path, **kwargs)
    except (InvalidDicomError, OSError, EOFError, ValueError) as err:
        raise DataError(path, f"not a readable DICOM file ({err})") from None


def _first_value(value: Any) -> float:
    """First of a multi-valued DICOM element (several VOI windows may be offered; the first is the default)."""
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)


def _dicom_window(ds: Any) -> tuple[float, float] | None:
    """VOI window in modality units: WindowCenter/Width (PS3.3 C.11.2.1.2, first value), else the VOI LUT's range."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = _first_value(ds.WindowCenter), _first_value(ds.WindowWidth)
        return centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        entries, first_value, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
        return float(first_value), float(first_value + (entries or 65536) - 1)
    return None


def dicom_frames(path: str | Path) -> int:
    """Number of frames of a DICOM file from its header (pixel data not decoded); no pixel data is an error."""
    path = Path(path)
    ds = _dcmread(path, defer_size="1 KB")
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(path, "DICOM file has no pixel data (e.g. a structured report or RT plan), nothing to read")
    return int(ds.get("NumberOfFrames", 1) or 1)


def read_dicom(path: str | Path, frame: int | None = None) -> tuple[np.ndarray, Meta]:
    """One frame of a DICOM file in modality units (RescaleSlope/Intercept applied, e.g. CT in HU).

    Only the asked frame is decoded, so an OCT volume is read a B-scan at a time. ``meta["window"]`` holds the VOI
    window and ``meta["invert"]`` is true for MONOCHROME1 (higher value = darker), both applied by normalisation.
    """
    from pydicom.pixels import apply_modality_lut, pixel_array

    path = Path(path)
    n_frames = dicom_frames(path)
    if frame is None and n_frames > 1:
        raise DataError(path, f"multi-frame DICOM with {n_frames} frames: read one frame at a time (frame=0..{n_frames - 1})")
    if frame is not None and not 0 <= frame < n_frames:
        raise DataError(path, f"frame {frame} out of range: the file has {n_frames} frame(s)")
    ds = _dcmread(path, stop_before_pixels=True)
    try:
        pixels = pixel_array(path, index=frame if n_frames > 1 else None)
    except Exception as err:  # decoder plugins raise their own types (missing codec, truncated data ...)
        raise DataError(path, f"cannot decode the DICOM pixel data ({type(err).__name__}: {err})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    values = apply_modality_lut(pixels, ds) if photometric.startswith("MONOCHROME") else pixels
    meta = {
        "path": str(path), "format": "DICOM", "dtype": str(pixels.dtype), "bit_depth": int(ds.get("BitsStored", 0) or 0),
        "frame": frame, "n_frames": n_frames, "photometric": photometric, "window": _dicom_window(ds),
        "invert": photometric == "MONOCHROME1", "dicom_modality": str(ds.get("Modality", "")),
        "patient_id": str(ds.get("PatientID", "")) or None,
        "rescale": (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)),
    }
    return _to_hwc(np.asarray(values), path).astype(np.float32), meta


def _nifti(path: Path) -> Any:
    import nibabel as nib

    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return nib.load(path)
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors ...
        raise DataError(path, f"not a readable NIfTI file ({type(err).__name__}: {err})") from None


def nifti_slices(path: str | Path, axis: int = 2) -> int:
    """Number of 2D slices of a NIfTI file cut along ``axis`` (4D: every volume's slices), from the header."""
    path = Path(path)
    shape = _nifti(path).shape
    if len(shape) == 2:
        return 1
    if len(shape) not in (3, 4):
        raise DataError(path, f"expected a 2D, 3D or 4D NIfTI volume, got {len(shape)}D with shape {shape}")
    per_volume = shape[axis]
    return per_volume * (shape[3] if len(shape) == 4 else 1)


def read_nifti(path: str | Path, frame: int | None = None, axis: int = 2) -> tuple[np.ndarray, Meta]:
    """Slice ``frame`` of a NIfTI volume cut along voxel ``axis`` (4D: frame = volume * slices + slice).

    Values have ``scl_slope``/``scl_inter`` applied; the slice keeps the stored voxel order (no reorientation).
    ``meta["window"]`` is (cal_min, cal_max) when the header sets a display range.
    """
    path = Path(path)
    count = nifti_slices(path, axis)
    img = _nifti(path)
    shape = img.shape
    if frame is None and count > 1:
        raise DataError(path, f"NIfTI volume with {count} slices along axis {axis}: read one at a time (frame=0..{count - 1})")
    frame = frame or 0
    if not 0 <= frame < count:
        raise DataError(path, f"slice {frame} out of range: the file has {count} slice(s) along axis {axis}")
    slicer: list[Any] = [slice(None)] * len(shape)
    volume, index = divmod(frame, shape[axis]) if len(shape) > 2 else (0, 0)
    if len(shape) > 2:
        slicer[axis] = index
    if len(shape) == 4:
        slicer[3] = volume
    try:
        array = np.asarray(img.dataobj[tuple(slicer)], dtype=np.float32)
    except Exception as err:
        raise DataError(path, f"cannot read slice {frame} ({type(err).__name__}: {err})") from None
    cal = (float(img.header["cal_min"]), float(img.header["cal_max"])) if "cal_min" in img.header else (0.0, 0.0)
    meta = {
        "path": str(path), "format": "NIfTI", "dtype": str(img.get_data_dtype()), "bit_depth": None, "frame": frame,
        "n_frames": count, "slice_axis": axis, "slice_index": index, "volume_index": volume, "shape": tuple(shape),
        "spacing": tuple(float(z) for z in img.header.get_zooms()), "window": cal if cal[1] > cal[0] else None,
    }
    return _to_hwc(array, path), meta


def read_image(path: str | Path, frame: int | None = None, *, nifti_axis: int = 2) -> tuple[np.ndarray, Meta]:
    """Read any supported file, dispatching on its name (see :func:`file_format`)."""
    fmt = file_format(path)
    if fmt == "dicom":
        return read_dicom(path, frame)
    if fmt == "nifti":
        return read_nifti(path, frame, nifti_axis)
    if frame not in (None, 0):
        raise DataError(path, f"frame {frame} asked of a single-frame image")
    return read_raster(path)


def count_frames(path: str | Path, *, nifti_axis: int = 2) -> int:
    """Frames (DICOM) or slices (NIfTI) in a file, 1 for PNG/JPEG/TIFF; checks headers only, cheap."""
    fmt = file_format(path)
    if fmt == "dicom":
        return dicom_frames(path)
    if fmt == "nifti":
        return nifti_slices(path, nifti_axis)
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix.lower() in (".tif", ".tiff"):
        return 1  # tifffile validates at read time; Pillow cannot open many scientific TIFFs
    try:
        with Image.open(path):
            return 1
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise DataError(path, "not an image Pillow can identify (wrong extension, or not an image file at all)") from None


def read_thermal(
    path: str | Path, gain: float, offset: float, frame: int | None = None
) -> tuple[np.ndarray, Meta]:
    """Radiometric thermal frame (16-bit counts) in degrees Celsius: ``degC = gain * counts + offset``.

    An 8-bit thermal image is a palette/AGC display rendering whose grey levels are not temperatures, so it is
    refused rather than converted to meaningless degrees.
    """
    counts, meta = read_image(path, frame)
    if np.dtype(meta["dtype"]).kind not in "ui" or (meta["bit_depth"] or 0) <= 8:
        raise DataError(
            path, f"radiometric thermal needs integer counts above 8 bit, got {meta['bit_depth']}-bit {meta['dtype']}; "
            "an 8-bit thermal image is a display rendering (use data.intensity: auto)"
        )
    meta.update(unit="degC", calibration=(gain, offset))
    return (counts * np.float32(gain) + np.float32(offset)).astype(np.float32), meta


def read_mask(path: str | Path) -> np.ndarray:
    """Segmentation mask as int64 (H, W) class ids; binary 0/255 masks become 0/1, palette indices are kept."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "mask file not found")
    if path.suffix.lower() in (".tif", ".tiff"):
        array = _read_tiff(path)[0]
    else:
        try:
            with Image.open(path) as img:
                array = np.array(img)  # mode P: palette indices are the class ids
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(path, f"cannot read the mask ({err})") from None
    if array.ndim == 3:
        if not (array[..., :3] == array[..., :1]).all():
            raise DataError(path, "colour mask: expected one channel of class ids (or grey 0/255)")
        array = array[..., 0]
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise DataError(path, "mask holds fractional values; expected integer class ids")
    mask = array.astype(np.int64)
    if set(np.unique(mask).tolist()) <= {0, 255}:
        mask //= 255
    if mask.min() < 0:
        raise DataError(path, f"mask holds negative values (min {mask.min()}); expected class ids >= 0")
    return mask
