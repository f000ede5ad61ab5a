"""Deterministic, resumable, shardable epoch order for the training DataLoader."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffles ``size`` indices as a pure function of (seed, epoch); each process takes every ``world``-th.

    ``skip`` drops the first items of the epoch so a run resumed mid-epoch sees exactly the batches it had not
    seen yet. The order is truncated to a multiple of ``world`` so every process gets the same count.
    """

    def __init__(self, size: int, *, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if size < 1:
            raise ValueError("EpochSampler needs at least one item")
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        usable = self.size - self.size % self.world
        return order[self.rank : usable : self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.skip :])

    def __len__(self) -> int:
        return self.size // self.world - self.skip
