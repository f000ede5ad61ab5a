"""Classification read-outs for frozen-feature evaluation: top-1, balanced accuracy and per-class recall.

Balanced accuracy (mean per-class recall) is the headline number because medical sets are imbalanced: an OCT
set with 80 % NORMAL scans gives 80 % top-1 to a model that never finds disease.
"""

from __future__ import annotations

from typing import Any

import torch


def balanced_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean recall over the classes present in ``labels``."""
    labels = labels.long().cpu()
    predictions = predictions.long().cpu()
    recalls = [float((predictions[labels == c] == c).float().mean()) for c in labels.unique().tolist()]
    if not recalls:
        raise ValueError("no samples to evaluate: the evaluated split is empty")
    return sum(recalls) / len(recalls)


def classification_metrics(
    predictions: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> dict[str, Any]:
    """``{"top1", "balanced_accuracy", "per_class_recall": {name: recall or None}, "support": {name: n}}``.

    Classes absent from ``labels`` get recall ``None`` and are left out of the balanced accuracy.
    """
    predictions, labels = predictions.long().cpu(), labels.long().cpu()
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if labels.numel() == 0:
        raise ValueError("no samples to evaluate: the evaluated split is empty")
    recalls: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for index, name in enumerate(class_names):
        of_class = labels == index
        support[name] = int(of_class.sum())
        recalls[name] = float((predictions[of_class] == index).float().mean()) if support[name] else None
    present = [r for r in recalls.values() if r is not None]
    return {
        "top1": float((predictions == labels).float().mean()),
        "balanced_accuracy": sum(present) / len(present),
        "per_class_recall": recalls,
        "support": support,
        "num_samples": int(labels.numel()),
    }
