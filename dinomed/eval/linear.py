"""Linear probe on frozen features with a learning-rate sweep chosen on the validation split.

As DINO's eval_linear.py (Caron et al., 2021): one linear layer (weights ~ N(0, 0.01), bias 0), SGD with momentum
0.9 and a cosine schedule, no weight decay by default. The features are extracted once and cached, so the probe
trains on tensors and a sweep of several learning rates costs seconds. The test split is scored only with the
learning rate that won on validation, so the reported number is not tuned on test.

Example:
    >>> result = linear_probe(train, val, test, num_classes=4, lrs=[1e-3, 1e-2, 1e-1], epochs=100)
    >>> result.best_lr, result.test_predictions
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dinomed.eval.metrics import balanced_accuracy

FeatureSet = tuple[torch.Tensor, torch.Tensor]  # (features (N, D), labels (N,))


@dataclass
class LinearProbeResult:
    """The chosen learning rate, every swept rate's validation balanced accuracy, and the chosen model's outputs."""

    best_lr: float
    sweep: dict[float, float]
    classifier: nn.Linear
    val_predictions: torch.Tensor
    test_predictions: torch.Tensor


def train_linear(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    lr: float,
    epochs: int = 100,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> nn.Linear:
    """One linear classifier trained with SGD(momentum 0.9) and a per-step cosine learning rate."""
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(feats.shape[1], num_classes)
    with torch.no_grad():
        classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=generator) * 0.01)
        classifier.bias.zero_()
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(feats.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    feats, labels = feats.float(), labels.long()
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = torch.randperm(feats.shape[0], generator=generator)
        batch = order[(step % steps_per_epoch) * batch_size :][:batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
        loss = nn.functional.cross_entropy(classifier(feats[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier


@torch.no_grad()
def predict_linear(classifier: nn.Linear, feats: torch.Tensor) -> torch.Tensor:
    return classifier(feats.float()).argmax(dim=1)


def linear_probe(
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    num_classes: int,
    *,
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    epochs: int = 100,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> LinearProbeResult:
    """Sweep ``lrs``, keep the one with the best validation balanced accuracy, score test with it."""
    for name, (feats, _) in (("train", train), ("val", val)):
        if feats.shape[0] == 0:
            raise ValueError(f"the linear probe needs a non-empty {name} split to choose its learning rate")
    if not lrs:
        raise ValueError("linear_probe needs at least one learning rate in lrs")
    sweep: dict[float, float] = {}
    best: tuple[float, float, nn.Linear] | None = None
    for lr in lrs:
        classifier = train_linear(
            *train, num_classes, lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, seed=seed
        )
        score = balanced_accuracy(predict_linear(classifier, val[0]), val[1])
        sweep[float(lr)] = score
        if best is None or score > best[0]:
            best = (score, float(lr), classifier)
    assert best is not None
    _, best_lr, classifier = best
    return LinearProbeResult(
        best_lr=best_lr,
        sweep=sweep,
        classifier=classifier,
        val_predictions=predict_linear(classifier, val[0]),
        test_predictions=predict_linear(classifier, test[0]),
    )
