"""The only module that imports albumentations (and its OpenCV): compiles :class:`~dinomed.augment.ops.Op` lists.

albumentations was chosen because its multi-crop pipeline runs ~7x faster than torchvision v2 on our CPUs; it has
been unmaintained since mid-2025, so nothing else in dinomed may depend on it. Replacing the backend means
re-implementing :func:`build_pipeline`, :func:`resize` and :func:`worker_init` for every op listed in :data:`~dinomed.augment.ops.BUILTIN_OPS`.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dinomed.augment.ops import CUSTOM_OPS, Op, foreground_counts  # noqa: E402

__all__ = ["Pipeline", "build_pipeline", "resize", "worker_init"]

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}

# One OpenCV thread per process: DataLoader workers are the parallelism, and a forked worker deadlocks when the
# parent had already started OpenCV's thread pool (seen in bench_multicrop after large real images).
cv2.setNumThreads(1)


class _CustomOp(A.ImageOnlyTransform):
    """Runs one of dinomed's numpy ops with a generator seeded from the pipeline's own random state."""

    def __init__(self, op_name: str, op_params: dict[str, Any], p: float) -> None:
        super().__init__(p=p)
        self.op_name, self.op_params = op_name, op_params

    def get_params(self) -> dict[str, Any]:
        return {"op_seed": int(self.random_generator.integers(2**32))}

    def apply(self, img: np.ndarray, op_seed: int = 0, **_: Any) -> np.ndarray:
        return CUSTOM_OPS[self.op_name](img, np.random.default_rng(op_seed), **self.op_params).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("op_name", "op_params")


class _ForegroundResizedCrop(A.RandomResizedCrop):
    """A random-resized crop redrawn until ``foreground`` of its area is foreground (the best of ``tries`` draws)."""

    def __init__(self, foreground: float, tries: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.foreground, self.tries = foreground, tries

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        # the image's summed-area table, shared by its views when the caller passed it, so each draw is 4 lookups
        table = data.get("foreground_counts")
        if table is None:
            table = foreground_counts(data["image"])
        best, best_fraction = None, -1.0
        for _ in range(self.tries):
            coords = super().get_params_dependent_on_data(params, data)
            x0, y0, x1, y1 = coords["crop_coords"]
            count = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
            fraction = count / max(1, (y1 - y0) * (x1 - x0))
            if fraction >= self.foreground:
                return coords
            if fraction > best_fraction:
                best, best_fraction = coords, fraction
        return best

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "foreground", "tries")


def _odd(value: float) -> int:
    k = max(3, int(round(value)))
    return k if k % 2 else k + 1


def _builtin(op: Op, channels: int) -> A.BasicTransform:
    """The albumentations transform for a built-in op (parameter names as documented in ``ops``)."""
    q, p = op.params, op.p
    if op.name == "random_resized_crop":
        crop = dict(size=tuple(q["size"]), scale=tuple(q["scale"]), ratio=tuple(q["ratio"]), p=p)
        foreground = float(q.get("foreground", 0.0))
        return _ForegroundResizedCrop(foreground, **crop) if foreground > 0 else A.RandomResizedCrop(**crop)
    if op.name == "hflip":
        return A.HorizontalFlip(p=p)
    if op.name == "vflip":
        return A.VerticalFlip(p=p)
    if op.name == "rotate":
        border = _BORDERS[q.get("border", "constant")]
        return A.Rotate(limit=float(q["limit"]), border_mode=border, fill=0.0, p=p)
    if op.name == "color_jitter":
        if channels == 1:  # saturation and hue do not exist in one channel
            return A.ColorJitter(brightness=q["brightness"], contrast=q["contrast"], saturation=0.0, hue=0.0, p=p)
        hue = min(float(q["hue"]), 0.5)
        return A.ColorJitter(brightness=q["brightness"], contrast=q["contrast"], saturation=q["saturation"], hue=hue, p=p)
    if op.name == "grayscale":
        return A.ToGray(num_output_channels=channels, p=p if channels == 3 else 0.0)
    if op.name == "gamma":
        amount = min(float(q["amount"]), 0.95)
        return A.RandomGamma(gamma_limit=(100 * (1 - amount), 100 * (1 + amount)), p=p)
    if op.name == "brightness_contrast":
        return A.RandomBrightnessContrast(brightness_limit=q["brightness"], contrast_limit=q["contrast"], p=p)
    if op.name == "gaussian_blur":
        return A.GaussianBlur(sigma_limit=tuple(q["sigma"]), blur_limit=0, p=p)
    if op.name == "motion_blur":
        return A.MotionBlur(blur_limit=(3, _odd(q["kernel"])), p=p)
    if op.name == "solarize":
        t = float(q["threshold"])
        return A.Solarize(threshold_range=(t, t), p=p)
    raise ValueError(f"the albumentations backend has no builder for op '{op.name}'")  # pragma: no cover


class Pipeline:
    """A compiled op list: ``pipeline(image, seed)`` is a pure function of the image and the seed."""

    def __init__(self, ops: Sequence[Op], channels: int) -> None:
        self.ops, self.channels = list(ops), channels
        transforms = [
            _CustomOp(op.name, dict(op.params), op.p) if op.name in CUSTOM_OPS else _builtin(op, channels)
            for op in self.ops
        ]
        self._compose = A.Compose(transforms, seed=0)

    def __call__(self, image: np.ndarray, seed: int, foreground_counts: np.ndarray | None = None) -> np.ndarray:
        """The augmented image; ``foreground_counts`` (:func:`~dinomed.augment.ops.foreground_counts` of ``image``)
        spares foreground-aware crops from recomputing it in every view of the same image."""
        self._compose.set_random_seed(seed)
        data = {} if foreground_counts is None else {"foreground_counts": foreground_counts}
        out = self._compose(image=image, **data)["image"]
        if out.ndim == 2:
            out = out[..., None]
        return np.clip(out, 0.0, 1.0, dtype=np.float32)


def build_pipeline(ops: Sequence[Op], channels: int) -> Pipeline:
    """Compile ``ops`` (applied in order) for images with ``channels`` channels."""
    return Pipeline(ops, channels)


def resize(image: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) array to ``size`` = (height, width); ``nearest`` for label maps."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = image.astype(np.int32) if image.dtype in (np.int64, np.bool_) else image  # OpenCV has no int64
    out = cv2.resize(src, (w, h), interpolation=interp)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out.astype(image.dtype, copy=False)


def worker_init(_: int) -> None:
    """DataLoader worker start-up: the workers do the augmentation, one thread each (torch and OpenCV) so they do
    not oversubscribe a small machine's cores."""
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
