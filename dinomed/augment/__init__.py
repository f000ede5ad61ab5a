"""Augmentations: modality presets, DINO multi-crop and the eval transform.

Public API (imported lazily, so reading a recipe does not load the image backend)::

    from dinomed.augment import build_multicrop, MultiCropDataset, build_eval_transform, denormalize
    from dinomed.augment import build_paired_transform  # fine-tuning: image + mask/depth moved together
    from dinomed.augment import register_modality, get_preset, available_modalities, Op
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentConfig": "dinomed.augment.config",
    "Op": "dinomed.augment.ops",
    "Preset": "dinomed.augment.modalities",
    "register_modality": "dinomed.augment.modalities",
    "get_preset": "dinomed.augment.modalities",
    "available_modalities": "dinomed.augment.modalities",
    "normalization": "dinomed.augment.modalities",
    "MultiCrop": "dinomed.augment.multicrop",
    "MultiCropDataset": "dinomed.augment.multicrop",
    "EvalTransform": "dinomed.augment.multicrop",
    "build_multicrop": "dinomed.augment.multicrop",
    "build_eval_transform": "dinomed.augment.multicrop",
    "denormalize": "dinomed.augment.multicrop",
    "PairedTransform": "dinomed.augment.paired",
    "build_paired_transform": "dinomed.augment.paired",
    "save_preview": "dinomed.augment.preview",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dinomed.augment' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
