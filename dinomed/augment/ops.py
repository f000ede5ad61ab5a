"""Augmentation operations: a backend-neutral :class:`Op` description plus dinomed's own imaging-physics ops.

Presets (:mod:`dinomed.augment.modalities`) are written against :class:`Op` only; :mod:`dinomed.augment.backend`
turns a list of ops into a runnable pipeline. That keeps albumentations (unmaintained since mid-2025) behind one
module, so it can be swapped without touching a preset.

Built-in ops (implemented by the backend) and their parameters::

    random_resized_crop  size (h, w), scale (lo, hi), ratio (lo, hi)   area fraction and aspect ratio ranges;
                         foreground (optional, 0-1): redraw until that fraction of the crop is foreground
                         (:func:`foreground_mask`), keeping the most-foreground of 10 draws otherwise
    hflip / vflip        -
    rotate               limit (degrees, angle ~ U(-limit, limit)), border ("constant" zero fill | "reflect")
    color_jitter         brightness, contrast, saturation, hue        (torchvision ColorJitter semantics)
    grayscale            -                                          (keeps the channel count)
    gamma                amount                                      gamma ~ U(1 - amount, 1 + amount)
    brightness_contrast  brightness, contrast                        additive / multiplicative ranges
    gaussian_blur        sigma (lo, hi)
    motion_blur          kernel (largest odd kernel side)
    solarize             threshold                                   invert values >= threshold

Custom ops are the plain functions below (float32 (H, W, C) in [0, 1] in and out, randomness from a
``numpy.random.Generator``), registered in :data:`CUSTOM_OPS` under their op name.

Example::

    ops = [Op("hflip", p=0.5, photometric=False), Op("speckle", p=0.5, params={"sigma": 0.2}, magnitudes=("sigma",))]
    weaker = [op.scaled(0.5) for op in ops]   # speckle p 0.25, sigma 0.1; the flip is untouched
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "Op",
    "BUILTIN_OPS",
    "CUSTOM_OPS",
    "speckle_noise",
    "circular_fov_mask",
    "specular_highlights",
    "stripe_noise",
    "dead_pixels",
    "foreground_mask",
    "foreground_counts",
    "uses_foreground",
]


def foreground_mask(image: np.ndarray, bins: int = 64) -> np.ndarray:
    """Pixels above the image's Otsu threshold (on the channel mean): tissue against the dark background.

    Used by foreground-aware crops: in an OCT B-scan most of the frame is empty vitreous or choroid shadow, and a
    crop that lands only there holds no anatomy for DINO to match against the other views.
    """
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    hist, edges = np.histogram(gray, bins=bins)
    weight = np.cumsum(hist)
    mass = np.cumsum(hist * (edges[:-1] + edges[1:]) / 2)
    below, above = weight[:-1], weight[-1] - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below * above * (mass[:-1] / below - (mass[-1] - mass[:-1]) / above) ** 2
    if not np.isfinite(between).any():  # a constant image has no foreground
        return np.zeros(gray.shape, dtype=bool)
    return gray > edges[1 + int(np.nanargmax(np.where(np.isfinite(between), between, np.nan)))]


def foreground_counts(image: np.ndarray) -> np.ndarray:
    """Summed-area table of :func:`foreground_mask`, shape ``(H + 1, W + 1)``: a box's foreground count is four
    lookups. Computed once per image and shared by all its views (``Pipeline(image, seed, foreground_counts=...)``).
    """
    return np.pad(foreground_mask(image).cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def uses_foreground(ops: Sequence[Op]) -> bool:
    """Whether ``ops`` hold a foreground-aware crop (and so want :func:`foreground_counts` of the image)."""
    return any(op.name == "random_resized_crop" and op.params.get("foreground") for op in ops)


def speckle_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.2) -> np.ndarray:
    """Multiplicative speckle of OCT: ``I * n`` with ``n ~ Gamma(L, 1/L)`` (unit mean, std ``sigma``).

    Coherent imaging makes speckle multiplicative and gamma distributed (Goodman's fully developed speckle,
    ``L = 1 / sigma**2`` looks), so it is strongest in bright layers and absent in the dark vitreous. One
    noise field is shared by all channels so a grayscale B-scan stays grayscale.
    """
    if sigma <= 0:
        return image
    looks = 1.0 / sigma**2
    noise = rng.gamma(looks, 1.0 / looks, size=image.shape[:2] + (1,)).astype(np.float32)
    return np.clip(image * noise, 0.0, 1.0)


def circular_fov_mask(
    image: np.ndarray, rng: np.random.Generator, radius: tuple[float, float] = (0.45, 0.6), shift: float = 0.03
) -> np.ndarray:
    """Zero everything outside a circle, like the round field of view of an endoscope.

    The radius is a fraction of the shorter side drawn from ``radius`` and the centre moves by up to ``shift``
    of each side. On a square image the corners stay black while ``radius < sqrt(2) * (0.5 - shift)`` (0.66 for
    the defaults), as in real frames, so the model learns that the black border carries no meaning.
    """
    h, w = image.shape[:2]
    r = rng.uniform(*radius) * min(h, w)
    cy = (h - 1) / 2 + rng.uniform(-shift, shift) * h
    cx = (w - 1) / 2 + rng.uniform(-shift, shift) * w
    yy, xx = np.ogrid[:h, :w]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    return image * inside[..., None].astype(np.float32)


def specular_highlights(
    image: np.ndarray, rng: np.random.Generator, count: int = 4, radius: tuple[float, float] = (0.01, 0.04)
) -> np.ndarray:
    """Add 1..``count`` saturated white blobs: the light source reflected by wet mucosa.

    Each highlight is an elliptical Gaussian with a radius drawn from ``radius`` (fraction of the shorter side)
    blended towards white; real highlights clip the sensor, so the blob centre reaches 1.0.
    """
    count = int(round(count))
    if count < 1:
        return image
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    for _ in range(rng.integers(1, count + 1)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(*radius, size=2) * min(h, w)
        blob = np.exp(-0.5 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        alpha = np.maximum(alpha, np.clip(1.5 * blob, 0.0, 1.0))
    return image * (1.0 - alpha[..., None]) + alpha[..., None]


def stripe_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.03) -> np.ndarray:
    """Fixed-pattern stripe noise of uncooled microbolometers: one offset per column (or per row).

    Column-parallel readout gives each column its own offset drift, seen as vertical stripes in thermal frames
    between non-uniformity corrections; rows are picked for a quarter of the draws (rotated sensors).
    """
    if sigma <= 0:
        return image
    h, w = image.shape[:2]
    if rng.random() < 0.75:
        offsets = rng.normal(0.0, sigma, size=(1, w, 1))
    else:
        offsets = rng.normal(0.0, sigma, size=(h, 1, 1))
    return np.clip(image + offsets.astype(np.float32), 0.0, 1.0)


def dead_pixels(image: np.ndarray, rng: np.random.Generator, fraction: float = 0.002) -> np.ndarray:
    """Set a ``fraction`` of pixels to 0 or 1 (dead / stuck-hot detector elements), all channels alike."""
    h, w = image.shape[:2]
    n = int(round(fraction * h * w))
    if n < 1:
        return image
    out = image.copy()
    flat = rng.choice(h * w, size=n, replace=False)
    out[flat // w, flat % w, :] = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    return out


CustomOp = Callable[..., np.ndarray]
CUSTOM_OPS: dict[str, CustomOp] = {
    "speckle": speckle_noise,
    "fov_mask": circular_fov_mask,
    "specular": specular_highlights,
    "stripe_noise": stripe_noise,
    "dead_pixels": dead_pixels,
}

BUILTIN_OPS: dict[str, tuple[str, ...]] = {
    "random_resized_crop": ("size", "scale", "ratio", "foreground"),
    "hflip": (),
    "vflip": (),
    "rotate": ("limit", "border"),
    "color_jitter": ("brightness", "contrast", "saturation", "hue"),
    "grayscale": (),
    "gamma": ("amount",),
    "brightness_contrast": ("brightness", "contrast"),
    "gaussian_blur": ("sigma",),
    "motion_blur": ("kernel",),
    "solarize": ("threshold",),
}


def _param_names(name: str) -> tuple[str, ...]:
    if name in BUILTIN_OPS:
        return BUILTIN_OPS[name]
    return tuple(inspect.signature(CUSTOM_OPS[name]).parameters)[2:]  # after (image, rng)


@dataclass(frozen=True)
class Op:
    """One augmentation step: op ``name``, probability ``p`` and keyword ``params``.

    ``photometric`` ops change pixel values and are scaled by ``augment.strength`` (:meth:`scaled`); geometric
    ones (crop, flips, rotation) are symmetries of the data and are not. ``magnitudes`` names the scalar params
    that strength multiplies as well as ``p``.
    """

    name: str
    p: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    photometric: bool = True
    magnitudes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in BUILTIN_OPS and self.name not in CUSTOM_OPS:
            valid = sorted([*BUILTIN_OPS, *CUSTOM_OPS])
            raise ValueError(f"unknown augmentation op '{self.name}'; valid ops are {valid}")
        allowed = _param_names(self.name)
        for key in [*self.params, *self.magnitudes]:
            if key not in allowed:
                raise ValueError(f"op '{self.name}' has no parameter '{key}'; valid parameters are {list(allowed)}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"op '{self.name}': probability p must be in [0, 1], got {self.p}")

    def scaled(self, strength: float) -> Op | None:
        """This op at ``strength`` (1 = as given): photometric ``p`` and magnitudes multiplied; ``None`` at 0."""
        if not self.photometric or strength == 1.0:
            return self
        if strength <= 0.0 or self.p == 0.0:
            return None
        params = {k: (v * strength if k in self.magnitudes else v) for k, v in self.params.items()}
        return replace(self, p=min(1.0, self.p * strength), params=params)
