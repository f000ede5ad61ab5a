"""Task metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinomed.finetuning.metrics import (
    ClassificationMetrics,
    DepthMetrics,
    SegmentationMetrics,
    depth_errors,
    macro_f1,
)


def test_depth_errors_by_hand_without_scaling() -> None:
    target = np.array([1.0, 2.0, 4.0, 50.0])  # 50 is beyond the 10 m cap and ignored
    pred = np.array([1.0, 3.0, 2.0, 1.0])
    m = depth_errors(pred, target, min_depth=0.1, max_depth=10.0, median_scaling=False)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3))
    # ratios 1, 1.5, 2 -> below 1.25: 1 of 3; below 1.5625: 2 of 3; below 1.953: 2 of 3
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_median_scaling_removes_global_scale() -> None:
    target = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    m = depth_errors(target * 7.3, target, min_depth=0.1, max_depth=10.0)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["delta1"] == 1.0
    with pytest.raises(ValueError, match="no ground-truth depth"):
        depth_errors(target, target * 100, min_depth=0.1, max_depth=10.0)


def test_depth_metrics_average_over_images() -> None:
    metrics = DepthMetrics(0.1, 10.0, median_scaling=False)
    target = torch.ones(2, 1, 2, 2)
    pred = torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), 2.0)])
    metrics.update(pred, target)
    assert metrics.compute()["abs_rel"] == pytest.approx(0.5)


def test_segmentation_dice_iou_by_hand() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[0, :4, :4] = 1  # 16 pixels
    pred = torch.zeros(1, 8, 8, dtype=torch.long)
    pred[0, :4, :2] = 1  # 8 pixels, all inside
    logits = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    metrics = SegmentationMetrics(2)
    metrics.update(logits, mask)
    out = metrics.compute()
    assert out["dice"] == pytest.approx(2 * 8 / (8 + 16))
    assert out["iou"] == pytest.approx(8 / 16)
    assert out["hd95"] == pytest.approx(2.0)  # farthest missed column is 2 px from the prediction


def test_classification_metrics_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 1])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    metrics = ClassificationMetrics(2)
    metrics.update(logits, labels)
    out = metrics.compute()
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert out["auroc"] == pytest.approx(1.0)
    assert macro_f1(torch.tensor([1, 1]), torch.tensor([1, 1]), 3) == 1.0

