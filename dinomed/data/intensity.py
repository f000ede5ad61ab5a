"""Intensity normalisation: raw reader output (counts, HU, degC) -> float32 [0, 1], and channel conversion.

Kept apart from the readers so the mapping is one documented, recipe-controlled step (``data.intensity``):

* ``auto`` — the file decides: a DICOM VOI window / NIfTI display range when present; otherwise unsigned integer
  rasters by their bit depth (8-bit / 255, 16-bit / 65535, so a 16-bit OCT keeps its full dynamic range);
  DICOM/NIfTI/float/signed data without a window by the ``percentiles`` (0.5-99.5 %, robust to hot pixels).
* ``window`` — a fixed ``[low, high]`` in the file's units (e.g. a CT soft-tissue window in HU).
* ``percentile`` — per image ``percentiles``.
* ``thermal`` — degrees Celsius (from :func:`~dinomed.data.readers.read_thermal`) through ``temperature_window``:
  a fixed physical window keeps temperatures comparable across frames, which per-frame AGC does not.

MONOCHROME1 DICOM is inverted after windowing (PS3.3 C.7.6.3.1.2: the minimum value is displayed white).

Non-finite values (NaN, +-inf: masked-out voxels in some NIfTI pipelines) are left out when a per-image range is
computed and become 0 after mapping; an image with no finite value at all is an error naming the file.
"""

from __future__ import annotations

import numpy as np

from dinomed.data.config import DataConfig
from dinomed.data.readers import DataError, Meta

# ITU-R BT.601 luma weights, as Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def scale_range(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of [low, high] to [0, 1], clipped; a constant image (high <= low) maps to 0."""
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return np.clip((array.astype(np.float32) - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def auto_range(values: np.ndarray, meta: Meta, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The ``auto`` window for one image (see the module docstring); ``values`` are its finite values."""
    if meta.get("window") is not None:
        return meta["window"]
    dtype = np.dtype(meta["dtype"])
    if meta["format"] not in ("DICOM", "NIfTI") and dtype.kind == "u" and meta.get("bit_depth"):
        return 0.0, float(2 ** meta["bit_depth"] - 1)
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)


def normalise(array: np.ndarray, meta: Meta, cfg: DataConfig) -> np.ndarray:
    """Map a reader's (H, W, C) array to float32 [0, 1] as ``cfg.intensity`` says."""
    finite = np.isfinite(array)
    values = array if finite.all() else array[finite]
    if values.size == 0:
        raise DataError(meta["path"], f"all {array.size} values are NaN or infinite: nothing to read")
    if cfg.intensity == "thermal":
        if meta.get("unit") != "degC":
            raise DataError(meta["path"], "intensity 'thermal' needs an image read by read_thermal (values in degC)")
        low, high = cfg.temperature_window
    elif cfg.intensity == "window":
        low, high = cfg.window  # type: ignore[misc]  # DataConfig checks window is set
    elif cfg.intensity == "percentile":
        low, high = np.percentile(values, cfg.percentiles)
    else:
        low, high = auto_range(values, meta, cfg.percentiles)
    image = scale_range(array, low, high)
    image = 1.0 - image if meta.get("invert") else image
    if values is not array:
        image[~finite] = 0.0
    return image


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) -> (H, W, ``channels``): grey is replicated to RGB, RGB becomes BT.601 luminance."""
    if image.shape[-1] == channels:
        return image
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and image.shape[-1] == 3:
        return (image @ LUMA)[..., None].astype(np.float32)
    raise ValueError(f"cannot convert a {image.shape[-1]}-channel image to {channels} channels")
