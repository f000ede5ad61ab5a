"""The sample contract shared by every dataset: a :class:`Record` per item and a dict per loaded sample.

A loaded sample is a dict (MONAI style, so image, targets and metadata travel together)::

    {"image": float32 (H, W, C) in [0, 1], C in {1, 3},
     "label": int (absent when unlabelled), "mask": int64 (H, W) class indices (0 = background),
     "depth": float32 (H, W) metric depth, "meta": {"path", "group", "modality", ...}}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

SPLIT_NAMES = ("train", "val", "test")
# Values a data set's own split may use (case-insensitive), and the split each one means.
SPLIT_SYNONYMS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "holdout": "test", "held-out": "test", "heldout": "test",
}


def canonical_split(value: str) -> str | None:
    """``train`` / ``val`` / ``test`` for a split value or one of its synonyms, ``None`` for anything else."""
    return SPLIT_SYNONYMS.get(value.strip().lower())


@dataclass
class Record:
    """One item of a dataset before loading: where its pixels and targets are, its group, and the split the data
    itself assigns it (``train`` / ``val`` / ``test``; ``None`` when the data carries no split)."""

    image: str
    label: int | None = None
    mask: str | None = None
    depth: str | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    split: str | None = None

    @property
    def key(self) -> str:
        """Stable id of the record, independent of where the data folder sits (used by split files)."""
        return str(self.meta.get("key", self.image))


class ImageDataset(Dataset):
    """Base of all dinomed datasets: a list of records, ``load(record)`` returning a sample dict.

    Subclasses set ``records``, ``class_names`` (``None`` when unlabelled) and ``modality`` and implement
    :meth:`load`. Labels and groups are read from the records, so splits never touch pixels.
    """

    records: list[Record]
    class_names: list[str] | None = None
    modality: str = "natural"

    def load(self, record: Record) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(self.records[index])

    def labels(self) -> list[int | None]:
        return [r.label for r in self.records]

    def groups(self) -> list[str]:
        """Group id per item (patient / sequence / video); an item without one is its own group."""
        return [r.group if r.group is not None else f"item:{r.image}" for r in self.records]

    def has(self, target: str) -> bool:
        """Whether every record carries ``target`` ('label', 'mask' or 'depth')."""
        return bool(self.records) and all(getattr(r, target) is not None for r in self.records)

    def subset(self, indices: Sequence[int]) -> "SubsetDataset":
        return SubsetDataset(self, indices)


class SubsetDataset(ImageDataset):
    """A view on some items of another dataset, keeping its loader, classes and modality."""

    def __init__(self, parent: ImageDataset, indices: Sequence[int]) -> None:
        self.parent = parent
        self.indices = list(indices)
        self.records = [parent.records[i] for i in self.indices]
        self.class_names = parent.class_names
        self.modality = parent.modality

    def load(self, record: Record) -> dict[str, Any]:
        return self.parent.load(record)
