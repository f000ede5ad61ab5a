"""Paired training augmentation for fine-tuning: one geometric draw moves the image and its mask / depth alike.

Segmentation masks and depth maps are pixel-aligned with their image, so the modality preset's geometric ops
(random scale-crop, flips, rotation) are drawn once per sample and applied to all of them; masks and depth are
resampled nearest-neighbour so class ids stay ids and depth values stay measurements (no invented depths at
edges). Photometric ops change the image only, at ``augment.strength``. The preset decides what is allowed: OCT
has no vertical flip (retinal layer order is anatomy), endoscopy rolls freely. Ops that hide tissue the mask
still labels (the endoscope field-of-view mask) are left out. Pixels a rotation brings in are 0 in every target:
background for masks, invalid (below ``finetune.min_depth``, ignored by loss and metrics) for depth.

Example::

    transform = build_paired_transform("endoscopy", recipe.augment, size=224, channels=3)
    out = transform(sample["image"], seed=7, mask=sample["mask"])  # {"image": (3, 224, 224), "mask": (224, 224)}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from dinomed.augment.backend import build_pipeline, resize
from dinomed.augment.config import AugmentConfig
from dinomed.augment.modalities import get_preset
from dinomed.augment.multicrop import CROP_RATIO, EvalTransform, as_image, resolve_scales
from dinomed.augment.ops import Op

__all__ = ["Geometry", "PairedTransform", "build_paired_transform", "OCCLUDING_OPS", "GEOMETRIC_OPS"]

# Image-only ops that blank out content: the target would then label tissue the image no longer shows.
OCCLUDING_OPS = frozenset({"fov_mask"})
GEOMETRIC_OPS = frozenset({"hflip", "vflip", "rotate"})
_SCIPY_BORDER = {"constant": "constant", "reflect": "mirror"}  # OpenCV BORDER_REFLECT_101 is scipy's 'mirror'


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric ops: crop box (top, left, height, width), flips and rotation angle (degrees)."""

    box: tuple[int, int, int, int]
    hflip: bool
    vflip: bool
    angle: float


def _crop_box(shape: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box, with the aspect ratio drawn relative to the image's own (a full crop = eval view)."""
    h, w = shape
    for _ in range(10):
        area, ratio = rng.uniform(*scale), math.exp(rng.uniform(*np.log(CROP_RATIO)))
        bh, bw = int(round(h * math.sqrt(area / ratio))), int(round(w * math.sqrt(area * ratio)))
        if 0 < bh <= h and 0 < bw <= w:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    return 0, 0, h, w


class PairedTransform:
    """``transform(image, seed, mask=None, depth=None)`` -> normalised tensors as :class:`EvalTransform` returns.

    Args:
        geometric: the preset's geometric ops (``hflip``, ``vflip``, ``rotate``), applied after the scale-crop.
        photometric: image-only ops, already scaled by ``augment.strength``.
        scale: area fraction range of the random crop (the preset's global-view scale unless the recipe sets one).
        modality, size, channels: as :func:`~dinomed.augment.multicrop.build_eval_transform` (normalisation).
    """

    def __init__(self, geometric: Sequence[Op], photometric: Sequence[Op], scale: tuple[float, float],
                 modality: str, size: int | tuple[int, int], channels: int) -> None:
        unknown = sorted({op.name for op in geometric} - GEOMETRIC_OPS)
        if unknown:
            raise ValueError(f"paired augmentation cannot move targets with op(s) {unknown}; "
                             f"supported geometric ops are {sorted(GEOMETRIC_OPS)}")
        self.ops = {op.name: op for op in geometric}
        self.scale, self.channels = tuple(scale), channels
        self.finish = EvalTransform(modality, size, channels)
        self.photometric = build_pipeline(photometric, channels)

    def draw(self, shape: tuple[int, int], rng: np.random.Generator) -> Geometry:
        """The geometric parameters for an image of ``shape`` (height, width)."""
        box = _crop_box(shape, self.scale, rng)
        flips = [name in self.ops and rng.random() < self.ops[name].p for name in ("hflip", "vflip")]
        rotate = self.ops.get("rotate")
        angle = 0.0
        if rotate is not None and rng.random() < rotate.p:
            angle = float(rng.uniform(-rotate.params["limit"], rotate.params["limit"]))
        return Geometry(box, flips[0], flips[1], angle)

    def apply(self, array: np.ndarray, geometry: Geometry, *, nearest: bool) -> np.ndarray:
        """Crop, resize to the output size, flip and rotate one (H, W[, C]) array."""
        top, left, bh, bw = geometry.box
        out = resize(np.ascontiguousarray(array[top:top + bh, left:left + bw]), self.finish.size, nearest=nearest)
        if geometry.hflip:
            out = out[:, ::-1]
        if geometry.vflip:
            out = out[::-1]
        if geometry.angle:
            border = _SCIPY_BORDER[self.ops["rotate"].params.get("border", "constant")]
            out = ndimage.rotate(out, geometry.angle, axes=(1, 0), reshape=False, order=0 if nearest else 1,
                                 mode=border, cval=0.0)
        return np.ascontiguousarray(out)

    def __call__(self, image: np.ndarray, seed: int, mask: np.ndarray | None = None,
                 depth: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        image = as_image(image, self.channels)
        rng = np.random.default_rng(seed)
        geometry = self.draw(image.shape[:2], rng)
        moved = self.apply(image, geometry, nearest=False)
        moved = self.photometric(np.clip(moved, 0.0, 1.0), int(rng.integers(2**32)))
        targets = {}
        for name, target, dtype in (("mask", mask, np.int64), ("depth", depth, np.float32)):
            if target is not None:
                if np.shape(target)[:2] != image.shape[:2]:
                    raise ValueError(f"{name} of shape {np.shape(target)} does not match its image {image.shape[:2]}")
                targets[name] = self.apply(np.asarray(target, dtype=dtype), geometry, nearest=True)
        return self.finish(moved, **targets)


def build_paired_transform(modality: str, cfg: AugmentConfig, size: int | tuple[int, int], channels: int) -> PairedTransform:
    """The fine-tuning augmentation of ``modality``'s preset (first global view's ops, ``cfg.params``, ``cfg.strength``)."""
    preset = get_preset(modality, cfg.params)
    ops = preset.ops("global", 0, channels)
    geometric = [op for op in ops if not op.photometric]
    scaled = (op.scaled(cfg.strength) for op in ops if op.photometric and op.name not in OCCLUDING_OPS)
    photometric = [op for op in scaled if op is not None]
    return PairedTransform(geometric, photometric, resolve_scales(cfg, preset)[0], modality, size, channels)
