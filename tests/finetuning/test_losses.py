"""SiLog and gradient-matching losses against straightforward loop versions; Dice+CE from MONAI."""

from __future__ import annotations

import math

import pytest
import torch

from dinomed.finetuning.losses import DepthLoss, GradientMatchingLoss, SegmentationLoss, SiLogLoss


def silog_reference(pred, target, valid, lambd=0.85, alpha=10.0) -> float:
    g = [math.log(p) - math.log(t) for p, t, v in zip(pred.flatten().tolist(), target.flatten().tolist(),
                                                      valid.flatten().tolist()) if v]
    n = len(g)
    return alpha * math.sqrt(sum(x * x for x in g) / n - lambd * (sum(g) / n) ** 2)


def gradient_reference(pred, target, valid, scales=4) -> float:
    total = 0.0
    for s in range(scales):
        step = 2 ** s
        r = (pred.log() - target.log())[..., ::step, ::step]
        m = valid[..., ::step, ::step]
        acc = 0.0
        for idx in torch.nonzero(m.reshape(-1, *m.shape[-2:])).tolist():
            i, y, x = idx
            rr, mm = r.reshape(-1, *r.shape[-2:])[i], m.reshape(-1, *m.shape[-2:])[i]
            if x + 1 < mm.shape[1] and mm[y, x + 1]:
                acc += abs(float(rr[y, x + 1] - rr[y, x]))
            if y + 1 < mm.shape[0] and mm[y + 1, x]:
                acc += abs(float(rr[y + 1, x] - rr[y, x]))
        total += acc / max(int(m.sum()), 1)
    return total


@pytest.fixture
def depth_pair():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 8, 12) * 5 + 0.5
    pred = target * torch.exp(torch.randn_like(target) * 0.2)
    valid = torch.rand_like(target) > 0.2
    return pred, target, valid


def test_silog_matches_reference(depth_pair) -> None:
    pred, target, valid = depth_pair
    assert float(SiLogLoss()(pred, target, valid)) == pytest.approx(silog_reference(pred, target, valid), rel=1e-5)


def test_silog_is_scale_invariant_at_lambda_one(depth_pair) -> None:
    pred, target, valid = depth_pair
    loss = SiLogLoss(lambd=1.0, alpha=1.0)
    assert float(loss(pred * 3.0, target, valid)) == pytest.approx(float(loss(pred, target, valid)), rel=1e-4)


def test_gradient_matching_matches_reference(depth_pair) -> None:
    pred, target, valid = depth_pair
    value = float(GradientMatchingLoss()(pred, target, valid))
    assert value == pytest.approx(gradient_reference(pred, target, valid), rel=1e-5)
    assert float(GradientMatchingLoss()(target * 2.0, target, valid)) == pytest.approx(0.0, abs=1e-6)


def test_depth_loss_ignores_pixels_outside_caps(depth_pair) -> None:
    pred, target, _ = depth_pair
    loss = DepthLoss(min_depth=0.1, max_depth=10.0)
    far = target.clone()
    far[..., 0, 0] = 100.0  # beyond the cap: what is predicted there must not matter
    changed = pred.clone()
    changed[..., 0, 0] = 42.0
    assert float(loss(changed, far)) == pytest.approx(float(loss(pred, far)), rel=1e-6)
    assert float(loss(changed, target)) != pytest.approx(float(loss(pred, target)), rel=1e-6)
    assert torch.isfinite(loss(pred, target))


def test_segmentation_loss_is_low_for_correct_logits() -> None:
    mask = torch.zeros(2, 16, 16, dtype=torch.long)
    mask[:, 4:10, 4:10] = 1
    good = torch.nn.functional.one_hot(mask, 2).permute(0, 3, 1, 2).float() * 20 - 10
    loss = SegmentationLoss()
    assert float(loss(good, mask)) < 0.01 < float(loss(-good, mask))
