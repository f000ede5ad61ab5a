"""Weighted k-nearest-neighbour classification on frozen features, as DINO's eval_knn.py (Caron et al., 2021).

Each test feature votes with its ``k`` most cosine-similar training features; neighbour ``i`` adds
``exp(sim_i / T)`` to its class. No training, no hyper-parameter but ``k`` and ``T``: the cleanest read-out of
what self-supervision learned.

Example:
    >>> preds = knn_classify(train_feats, train_labels, test_feats, k=20, T=0.07, num_classes=4)
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def effective_k(k: int, num_train: int) -> int:
    """``k`` clipped to the training-set size, with a warning (small medical sets often have fewer than 20)."""
    if num_train < 1:
        raise ValueError("kNN needs at least one training sample; the train split is empty")
    if k > num_train:
        warnings.warn(f"kNN: k={k} exceeds the {num_train} training samples; using k={num_train}", stacklevel=3)
        return num_train
    return k


def knn_votes(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    T: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per-class vote mass ``(num_test, num_classes)``; features are L2-normalised here so cosine = dot product."""
    if train_feats.shape[0] != train_labels.shape[0]:
        raise ValueError(f"{train_feats.shape[0]} training features but {train_labels.shape[0]} labels")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"feature sizes differ: train {train_feats.shape[1]}, test {test_feats.shape[1]}")
    num_classes = int(num_classes if num_classes is not None else train_labels.max().item() + 1)
    k = effective_k(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    labels = train_labels.long()
    votes = []
    for start in range(0, test_feats.shape[0], chunk_size):
        test = F.normalize(test_feats[start : start + chunk_size].float(), dim=1)
        sims, idx = (test @ train.T).topk(k, dim=1)
        weights = (sims / T).exp()
        votes.append(torch.zeros(test.shape[0], num_classes).scatter_add_(1, labels[idx], weights))
    return torch.cat(votes) if votes else torch.zeros(0, num_classes)


def knn_classify(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    T: float = 0.07,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Predicted class per test feature: the class with the largest weighted vote (see :func:`knn_votes`)."""
    return knn_votes(train_feats, train_labels, test_feats, k, T, num_classes).argmax(dim=1)
