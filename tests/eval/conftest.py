"""Tiny labelled in-memory datasets and a tiny ViT for evaluation tests (no files, no other helpers needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dinomed.data.records import ImageDataset, Record


class StripesDataset(ImageDataset):
    """Class c = horizontal stripes with period 2 + 2c (learnable by a random ViT's features); masks = top half."""

    modality = "oct"

    def __init__(self, count: int = 24, size: int = 32, classes: int = 3) -> None:
        self.size = size
        self.class_names = [f"class{c}" for c in range(classes)]
        self.records = [Record(image=f"mem:{i}", label=i % classes, mask=f"mem:{i}", group=f"patient{i // 2}")
                        for i in range(count)]

    def load(self, record: Record) -> dict[str, Any]:
        index = int(record.image.split(":")[1])
        rng = np.random.default_rng(index)
        period = 2 + 2 * record.label
        rows = (np.arange(self.size)[:, None] // period % 2).astype(np.float32)
        image = np.clip(rows * 0.8 + 0.2 * rng.random((self.size, self.size)), 0, 1)[..., None].astype(np.float32)
        mask = np.zeros((self.size, self.size), dtype=np.int64)
        mask[: self.size // 2] = 1
        return {"image": image, "label": record.label, "mask": mask, "meta": {"path": record.image}}


def tensor_transform(image: np.ndarray, mask: np.ndarray | None = None, depth: Any = None) -> dict[str, torch.Tensor]:
    out = {"image": torch.from_numpy(image).permute(2, 0, 1) - 0.5}
    if mask is not None:
        out["mask"] = torch.from_numpy(mask)
    return out


@pytest.fixture
def transform():
    """A stand-in eval transform: HWC float -> {"image": CHW tensor, "mask"}, no resizing."""
    return tensor_transform


@pytest.fixture
def stripes() -> StripesDataset:
    return StripesDataset()


@pytest.fixture
def tiny_recipe(tmp_path) -> list[str]:
    """Overrides making the oct recipe a ViT-Ti/16 at 32 px on the CPU with a private feature cache."""
    return ["model.arch=vit_tiny_patch16_224", "augment.global_size=32", "data.channels=1", "train.device=cpu",
            "data.num_workers=0", f"eval.cache_dir={tmp_path / 'cache'}", "eval.linear_epochs=20",
            "eval.linear_lrs=[0.01,0.1]"]
