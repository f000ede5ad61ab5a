"""Top-1, balanced accuracy and per-class recall on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from dinomed.eval.metrics import balanced_accuracy, classification_metrics


def test_imbalanced_case_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 0])
    out = classification_metrics(preds, labels, ["a", "b", "c", "d"])
    assert out["top1"] == pytest.approx(4 / 7)
    assert out["per_class_recall"] == {"a": 0.75, "b": 0.5, "c": 0.0, "d": None}
    assert out["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert out["support"] == {"a": 4, "b": 2, "c": 1, "d": 0}
    assert balanced_accuracy(preds, labels) == pytest.approx(out["balanced_accuracy"])


def test_majority_class_predictor_gets_chance_balanced_accuracy() -> None:
    labels = torch.tensor([0] * 8 + [1] * 2)
    out = classification_metrics(torch.zeros(10, dtype=torch.long), labels, ["normal", "disease"])
    assert out["top1"] == pytest.approx(0.8) and out["balanced_accuracy"] == pytest.approx(0.5)


def test_empty_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(torch.tensor([]), torch.tensor([]), ["a"])
