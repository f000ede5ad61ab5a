"""Weighted kNN against a straightforward per-sample loop, k clipping, and a separable toy problem."""

from __future__ import annotations

import math

import pytest
import torch

from dinomed.eval.knn import knn_classify, knn_votes


def _loop_knn(train, labels, test, k, T, num_classes):
    """Reference: for each test vector, cosine to every train vector, top-k, sum exp(sim/T) per class."""
    preds, all_votes = [], []
    for x in test:
        sims = []
        for i, y in enumerate(train):
            cos = float(x @ y) / (math.sqrt(float(x @ x)) * math.sqrt(float(y @ y)))
            sims.append((cos, i))
        sims.sort(reverse=True)
        votes = [0.0] * num_classes
        for cos, i in sims[:k]:
            votes[int(labels[i])] += math.exp(cos / T)
        all_votes.append(votes)
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(preds), torch.tensor(all_votes)


@pytest.mark.parametrize("k,T", [(1, 0.07), (5, 0.07), (7, 0.5)])
def test_matches_loop_reference(k: int, T: float) -> None:
    gen = torch.Generator().manual_seed(k)
    train, test = torch.randn(40, 8, generator=gen), torch.randn(15, 8, generator=gen)
    labels = torch.randint(0, 3, (40,), generator=gen)
    ref_preds, ref_votes = _loop_knn(train, labels, test, k, T, 3)
    votes = knn_votes(train, labels, test, k=k, T=T, num_classes=3)
    assert torch.allclose(votes, ref_votes.float(), rtol=1e-4)
    assert torch.equal(knn_classify(train, labels, test, k=k, T=T, num_classes=3), ref_preds)


def test_chunking_does_not_change_votes() -> None:
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(30, 4, generator=gen), torch.randn(9, 4, generator=gen)
    labels = torch.randint(0, 2, (30,), generator=gen)
    whole = knn_votes(train, labels, test, k=4, num_classes=2)
    chunked = knn_votes(train, labels, test, k=4, num_classes=2, chunk_size=2)
    assert torch.allclose(whole, chunked)


def test_k_larger_than_train_is_clipped_with_warning() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    labels = torch.tensor([0, 1, 0])
    with pytest.warns(UserWarning, match="k=20 exceeds the 3 training samples"):
        preds = knn_classify(train, labels, torch.tensor([[1.0, 0.05]]), k=20, T=0.07, num_classes=2)
    assert preds.tolist() == [0]


def test_num_classes_wider_than_labels_seen() -> None:
    votes = knn_votes(torch.eye(2), torch.tensor([0, 1]), torch.eye(2), k=1, num_classes=4)
    assert votes.shape == (2, 4) and votes[:, 2:].sum() == 0


def test_mismatched_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="3 training features but 2 labels"):
        knn_votes(torch.randn(3, 2), torch.tensor([0, 1]), torch.randn(1, 2))
