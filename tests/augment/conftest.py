"""Small images and configs for the augmentation tests (32/16 px crops keep every test well under a second)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dinomed.augment.config import AugmentConfig
from dinomed.data.records import ImageDataset, Record

CHANNELS = {"oct": 1, "endoscopy": 3, "thermal": 1, "natural": 3}


class TinyDataset(ImageDataset):
    """Random-texture images of ``size`` with ``channels`` channels, as loaded samples per the contract."""

    def __init__(self, count: int = 4, size: tuple[int, int] = (48, 64), channels: int = 1, seed: int = 0) -> None:
        self.records = [Record(image=f"tiny://{i}", label=i % 2) for i in range(count)]
        self.class_names = ["a", "b"]
        self.size, self.channels, self.seed = size, channels, seed

    def load(self, record: Record) -> dict[str, Any]:
        index = int(record.image.rsplit("/", 1)[1])
        rng = np.random.default_rng([self.seed, index])
        image = rng.random((*self.size, self.channels), dtype=np.float32)
        return {"image": image, "label": record.label, "meta": {"path": record.image}}


def small_config(**kwargs: Any) -> AugmentConfig:
    values = {"global_size": 32, "local_size": 16, "local_crops": 2, **kwargs}
    return AugmentConfig(**values)
