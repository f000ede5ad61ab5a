"""Patch PCA: RGB range and shape, recovery of a planted structure, foreground thresholding."""

from __future__ import annotations

import torch

from dinomed.eval.pca import patch_pca, principal_components


def test_first_component_follows_dominant_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(-1, 1, 50)
    direction = torch.zeros(6)
    direction[2] = 1.0
    x = t[:, None] * direction * 10 + 0.01 * torch.randn(50, 6, generator=gen)
    proj = principal_components(x, 3)
    assert torch.corrcoef(torch.stack([proj[:, 0], t]))[0, 1].abs() > 0.99


def test_rgb_shape_range_and_foreground() -> None:
    patches = torch.zeros(2, 4, 4, 8)
    patches[:, :2] += torch.tensor([5.0] + [0.0] * 7)  # top half "object"
    patches += 0.1 * torch.randn(patches.shape, generator=torch.Generator().manual_seed(1))
    rgb = patch_pca(patches)
    assert rgb.shape == (2, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    masked = patch_pca(patches, foreground_threshold=0.0)
    background = masked.sum(-1) == 0
    # one half is black, the other coloured
    assert background[:, :2].all() != background[:, 2:].all()
    assert background.float().mean() == 0.5
