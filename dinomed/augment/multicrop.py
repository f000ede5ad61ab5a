"""DINO multi-crop (Caron et al., ICCV 2021, sec. 3.1): a few large global views and many small local views.

``build_multicrop(modality, aug_cfg, channels)`` makes a :class:`MultiCrop` whose call on an image (float32
(H, W, C) in [0, 1]) and a seed returns the globals first, then the locals, each a (C, S, S) float32 tensor
normalised by the modality's mean/std. Every view is a random-resized crop (upscaling images smaller than the
crop, any aspect ratio) followed by the modality preset's ops at ``augment.strength``::

    multicrop = build_multicrop("oct", recipe.augment, channels=1)
    crops = multicrop(sample["image"], seed=7)         # same seed -> same crops
    loader = DataLoader(MultiCropDataset(dataset, multicrop, seed=0), batch_size=64, num_workers=2)

``build_eval_transform`` gives fine-tuning/evaluation the plain resize with the same normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dinomed.augment.backend import build_pipeline, resize
from dinomed.augment.config import AugmentConfig
from dinomed.augment.modalities import Preset, get_preset, normalization
from dinomed.augment.ops import Op, foreground_counts, uses_foreground

__all__ = [
    "MultiCrop",
    "MultiCropDataset",
    "EvalTransform",
    "build_multicrop",
    "build_eval_transform",
    "resolve_scales",
    "denormalize",
    "as_image",
]

# torchvision RandomResizedCrop's aspect-ratio range, as in DINO.
CROP_RATIO = (3 / 4, 4 / 3)


def as_image(image: Any, channels: int) -> np.ndarray:
    """Check a sample image against the contract (float (H, W, C) in [0, 1], C == ``channels``)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(
            f"expected an image of shape (H, W, {channels}) (data.channels = {channels}), got {image.shape}"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}; readers must scale to [0, 1]")
    return np.ascontiguousarray(image, dtype=np.float32)


def _to_tensor(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(((image - mean) / std).transpose(2, 0, 1), dtype=np.float32))


class MultiCrop:
    """A list of view pipelines (globals first); ``multicrop(image, seed)`` -> list of normalised crop tensors.

    Args:
        views: per view, the ops applied in order (a ``random_resized_crop`` first).
        channels: image channel count, kept by every op.
        mean, std: per-channel normalisation constants.
        global_crops: how many of ``views`` are global (teacher) views; they come first.
    """

    def __init__(
        self, views: Sequence[Sequence[Op]], channels: int, mean: Sequence[float], std: Sequence[float],
        global_crops: int,
    ) -> None:
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values, got mean={tuple(mean)} std={tuple(std)}")
        self.views = [list(v) for v in views]
        self.channels, self.global_crops = channels, global_crops
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        compiled: dict[str, Any] = {}  # identical op lists (all the locals) share one pipeline
        self._pipelines = [compiled.setdefault(repr(v), build_pipeline(v, channels)) for v in self.views]
        self._foreground = any(uses_foreground(v) for v in self.views)

    def __len__(self) -> int:
        return len(self.views)

    def view_seeds(self, seed: int) -> list[int]:
        """Independent per-view seeds derived from ``seed`` (a view's crop depends only on its own seed)."""
        return [int(s) for s in np.random.SeedSequence(seed).generate_state(len(self.views))]

    def crops(self, image: np.ndarray, seed: int) -> list[np.ndarray]:
        """The views as float32 (S, S, C) arrays in [0, 1], before normalisation (for previews)."""
        image = as_image(image, self.channels)
        counts = foreground_counts(image) if self._foreground else None  # once per image, not once per view
        return [pipe(image, s, counts) for pipe, s in zip(self._pipelines, self.view_seeds(seed))]

    def __call__(self, image: np.ndarray, seed: int) -> list[torch.Tensor]:
        return [_to_tensor(c, self.mean, self.std) for c in self.crops(image, seed)]


def resolve_scales(cfg: AugmentConfig, preset: Preset) -> tuple[tuple[float, float], tuple[float, float]]:
    """(global, local) crop scale ranges: the recipe's when set, else the preset's suggestion."""
    return (
        tuple(cfg.global_scale) if cfg.global_scale is not None else preset.global_scale,
        tuple(cfg.local_scale) if cfg.local_scale is not None else preset.local_scale,
    )


def _crop(size: int, scale: tuple[float, float], foreground: float) -> Op:
    params = {"size": (size, size), "scale": scale, "ratio": CROP_RATIO}
    return Op("random_resized_crop", params={**params, "foreground": foreground} if foreground else params,
              photometric=False)


def _view(crop: Op, ops: Sequence[Op], strength: float) -> list[Op]:
    scaled = (op.scaled(strength) for op in ops)
    return [crop, *(op for op in scaled if op is not None)]


def build_multicrop(modality: str, cfg: AugmentConfig, channels: int) -> MultiCrop:
    """The multi-crop of ``modality``'s preset (with ``cfg.params``) for the geometry in ``cfg``."""
    preset = get_preset(modality, cfg.params)
    global_scale, local_scale = resolve_scales(cfg, preset)
    foreground = cfg.foreground if cfg.foreground is not None else preset.foreground
    g_crop, l_crop = _crop(cfg.global_size, global_scale, foreground), _crop(cfg.local_size, local_scale, foreground)
    views = [_view(g_crop, preset.ops("global", i, channels), cfg.strength) for i in range(cfg.global_crops)]
    views += [_view(l_crop, preset.ops("local", i, channels), cfg.strength) for i in range(cfg.local_crops)]
    mean, std = preset.normalization(channels)
    return MultiCrop(views, channels, mean, std, cfg.global_crops)


class MultiCropDataset(Dataset):
    """Wraps an image dataset: item ``i`` is the list of crop tensors of sample ``i``.

    The crop seed of item ``i`` is a hash of ``(seed, epoch, i)``, so a run is reproducible whatever the worker
    count or order, and :meth:`set_epoch` gives every image new views each epoch. Picklable for DataLoader
    workers (call ``set_epoch`` before the epoch's iterator is created when workers are persistent).
    """

    def __init__(self, dataset: Dataset, multicrop: MultiCrop, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset, self.multicrop, self.seed, self.epoch = dataset, multicrop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        sample = self.dataset[index]
        image = sample["image"] if isinstance(sample, Mapping) else sample
        return self.multicrop(image, self.sample_seed(index))


class EvalTransform:
    """Deterministic resize + normalisation for fine-tuning and evaluation (no crop: the whole field of view).

    ``transform(image, mask=None, depth=None)`` -> ``{"image": (C, H, W) float32, "mask": (H, W) int64 resized
    nearest (labels stay labels), "depth": (H, W) float32 resized linearly}``; absent targets are left out.
    """

    def __init__(self, modality: str, size: int | tuple[int, int], channels: int) -> None:
        self.modality, self.channels = modality, channels
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mean, std = normalization(modality, channels)
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    @property
    def cache_id(self) -> str:
        """Everything its output depends on (keys the feature cache of :mod:`dinomed.eval.features`)."""
        return f"eval:{self.modality}:{self.size[0]}x{self.size[1]}:{self.channels}:{self.mean.tolist()}:{self.std.tolist()}"

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None = None, depth: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        image = as_image(image, self.channels)
        out = {"image": _to_tensor(np.clip(resize(image, self.size), 0.0, 1.0), self.mean, self.std)}
        if mask is not None:
            out["mask"] = torch.from_numpy(resize(np.asarray(mask, dtype=np.int64), self.size, nearest=True))
        if depth is not None:
            out["depth"] = torch.from_numpy(resize(np.asarray(depth, dtype=np.float32), self.size))
        return out


def build_eval_transform(modality: str, size: int | tuple[int, int], channels: int) -> EvalTransform:
    """The eval/fine-tune transform of ``modality`` at ``size`` (side or (height, width))."""
    return EvalTransform(modality, size, channels)


def denormalize(tensor: torch.Tensor, modality: str) -> torch.Tensor:
    """Undo the normalisation of a (C, H, W) or (B, C, H, W) tensor for display (values back to ~[0, 1])."""
    mean, std = normalization(modality, tensor.shape[-3])
    shape = (-1, 1, 1)
    m = torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(shape)
    s = torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(shape)
    return tensor * s + m
