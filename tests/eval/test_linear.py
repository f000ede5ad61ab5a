"""Linear probe: learns a separable problem, picks the learning rate on validation, is deterministic."""

from __future__ import annotations

import pytest
import torch

from dinomed.eval.linear import linear_probe, train_linear


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    return centres[labels] + torch.randn(n, 4, generator=gen), labels


def test_separable_blobs_are_learned_and_lr_chosen_on_val() -> None:
    train, val, test = _blobs(60, 0), _blobs(30, 1), _blobs(30, 2)
    result = linear_probe(train, val, test, 3, lrs=[1e-6, 1e-1], epochs=30, batch_size=16)
    assert set(result.sweep) == {1e-6, 1e-1}
    assert result.best_lr == 1e-1 and result.sweep[1e-1] > result.sweep[1e-6]
    assert (result.test_predictions == test[1]).float().mean() > 0.9


def test_deterministic_for_a_seed() -> None:
    feats, labels = _blobs(20, 0)
    a = train_linear(feats, labels, 3, lr=0.05, epochs=3, batch_size=8, seed=3)
    b = train_linear(feats, labels, 3, lr=0.05, epochs=3, batch_size=8, seed=3)
    assert torch.equal(a.weight, b.weight)


def test_empty_val_split_is_an_actionable_error() -> None:
    train = _blobs(10, 0)
    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty val split"):
        linear_probe(train, empty, train, 3, lrs=[0.1], epochs=1)
