"""KoLeo regulariser against a direct double loop over pairs."""

from __future__ import annotations

import math

import pytest
import torch

from dinomed.ssl.koleo import KoLeoLoss


def _reference(features: torch.Tensor) -> torch.Tensor:
    x = features / features.norm(dim=1, keepdim=True)
    terms = []
    for i in range(x.shape[0]):
        nearest = min(float((x[i] - x[j]).norm()) for j in range(x.shape[0]) if j != i)
        terms.append(-math.log(nearest + 1e-8))
    return torch.tensor(sum(terms) / len(terms))


def test_matches_pairwise_reference() -> None:
    torch.manual_seed(0)
    features = torch.randn(12, 7)
    assert KoLeoLoss()(features).item() == pytest.approx(_reference(features).item(), rel=1e-5)


def test_grows_as_features_collapse_and_has_gradients() -> None:
    torch.manual_seed(0)
    spread = torch.randn(16, 8)
    collapsed = spread[:1] + 1e-3 * torch.randn(16, 8)
    assert KoLeoLoss()(collapsed) > KoLeoLoss()(spread) + 3.0
    features = torch.randn(8, 4, requires_grad=True)
    KoLeoLoss()(features).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_rejects_a_single_sample() -> None:
    with pytest.raises(ValueError, match="batch >= 2"):
        KoLeoLoss()(torch.randn(1, 4))
