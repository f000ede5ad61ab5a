"""Turn source masks, depth maps and unreadable image formats into the manifest's file formats.

Manifest targets (see dinomed.data.records): masks are PNGs of class indices (0 = background), so a 0/255
binary mask becomes 0/1; depth maps are float32 ``.npy`` in metres, 0 where the source has no depth (invalid
pixels must stay distinguishable from near depth); images stay where they are unless Pillow cannot read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

READABLE = (".png", ".jpg", ".jpeg", ".bmp")


def read_array(path: Path) -> np.ndarray:
    """Pixels of an image file; TIFFs Pillow rejects (CVC-ClinicDB's mislabelled photometric tag) via tifffile."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{path}: unreadable image ({err})") from None
    try:
        import tifffile
    except ImportError:  # pragma: no cover - tifffile ships with scikit-image
        raise ValueError(f"{path}: Pillow cannot read this TIFF; install tifffile") from None
    return np.asarray(tifffile.imread(path))


def needs_conversion(path: Path) -> bool:
    """Whether an image must be re-encoded for the manifest readers (anything but PNG/JPEG/BMP)."""
    return path.suffix.lower() not in READABLE


def write_image_png(src: Path, dst: Path) -> None:
    """Lossless PNG copy of an image in a format the readers do not take (8-bit TIFF frames)."""
    pixels = read_array(src)
    if pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(dst)


def write_binary_mask(src: Path, dst: Path, threshold: int) -> None:
    """0/1 class-index PNG from a binary mask (any channel >= threshold is foreground; JPEG masks are noisy)."""
    pixels = read_array(src)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.ndim == 3:
        pixels = pixels[..., :3].max(axis=-1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels >= threshold).astype(np.uint8)).save(dst)


def write_depth(src: Path, dst: Path, scale: float) -> None:
    """float32 depth in metres (``value * scale``) saved as ``.npy``; 0 stays 0 = no measurement."""
    pixels = read_array(src).astype(np.float32)
    if pixels.ndim == 3:
        raise ValueError(f"{src}: depth map has {pixels.shape[-1]} channels, expected a single-channel image")
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.save(dst, pixels * np.float32(scale))
