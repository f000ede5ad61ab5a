"""DINOProjectionHead against a straightforward re-implementation of the reference DINOHead."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dinomed.models.heads import DINOProjectionHead


def straightforward_head(head: DINOProjectionHead, x: torch.Tensor) -> torch.Tensor:
    """Linear-GELU-Linear-GELU-Linear, L2-normalise, then ``g * v / ||v||`` (row-wise weight norm) without bias."""
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    for i, linear in enumerate(linears):
        x = F.linear(x, linear.weight, linear.bias)
        if i < len(linears) - 1:
            x = F.gelu(x)
    x = x / x.norm(dim=-1, keepdim=True)
    g = head.last_layer.parametrizations.weight.original0
    v = head.last_layer.parametrizations.weight.original1
    return x @ (g * v / v.norm(dim=1, keepdim=True)).T


def test_architecture_and_output_match_reference() -> None:
    torch.manual_seed(0)
    head = DINOProjectionHead(32, out_dim=100, hidden_dim=64, bottleneck_dim=16)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 64), (64, 64), (64, 16)]
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == 2
    assert head.last_layer.bias is None
    x = torch.randn(7, 32)
    out = head(x)
    assert out.shape == (7, 100)
    torch.testing.assert_close(out, straightforward_head(head, x))


def test_default_bottleneck_is_256() -> None:
    head = DINOProjectionHead(24, out_dim=50, hidden_dim=32)
    assert head.last_layer.in_features == 256


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_norm_last_layer_freezes_the_gain(norm_last_layer: bool) -> None:
    head = DINOProjectionHead(16, out_dim=40, hidden_dim=32, bottleneck_dim=8, norm_last_layer=norm_last_layer)
    gain = head.last_layer.parametrizations.weight.original0
    assert torch.all(gain == 1.0)
    assert gain.requires_grad is not norm_last_layer
    head(torch.randn(4, 16)).sum().backward()
    assert (gain.grad is None) is norm_last_layer
    if norm_last_layer:  # unit gain: each prototype row of the effective weight has norm 1
        torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(40))


def test_use_bn_and_single_layer() -> None:
    head = DINOProjectionHead(16, out_dim=10, hidden_dim=32, bottleneck_dim=8, use_bn=True)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.mlp) == 2
    single = DINOProjectionHead(16, out_dim=10, bottleneck_dim=8, nlayers=1)
    assert [type(m) for m in single.mlp] == [nn.Linear]
    assert single(torch.randn(3, 16)).shape == (3, 10)
    with pytest.raises(ValueError, match="nlayers"):
        DINOProjectionHead(16, nlayers=0)
