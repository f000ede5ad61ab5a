"""Patch-feature PCA shown as RGB (DINOv2, Oquab et al., 2023, Fig. 1): the first three principal components of
the patch tokens of a set of images, fitted jointly so that colours mean the same part across images.

Optionally (as DINOv2) the first component separates foreground from background: patches with a first component
above ``threshold`` are kept, the PCA is refitted on them alone and background patches are drawn black.

Example:
    >>> rgb = patch_pca(patch_grid)                  # (B, Hp, Wp, D) -> (B, Hp, Wp, 3) in [0, 1]
    >>> rgb = patch_pca(patch_grid, foreground_threshold=0.0)
"""

from __future__ import annotations

import torch


def principal_components(x: torch.Tensor, n: int = 3) -> torch.Tensor:
    """Projection of rows of ``x`` (N, D) on its first ``n`` principal axes, sign fixed so the largest
    loading is positive (stable colours between runs)."""
    if x.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 patch vectors, got {x.shape[0]}")
    centred = x.float() - x.float().mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:n]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    projected = centred @ (axes * signs).T
    if projected.shape[1] < n:  # fewer dimensions than components: pad with zeros
        projected = torch.cat([projected, projected.new_zeros(projected.shape[0], n - projected.shape[1])], dim=1)
    return projected


def _to_unit(values: torch.Tensor) -> torch.Tensor:
    lo, hi = values.min(dim=0).values, values.max(dim=0).values
    return (values - lo) / (hi - lo).clamp_min(1e-8)


def patch_pca(patches: torch.Tensor, foreground_threshold: float | None = None) -> torch.Tensor:
    """RGB in [0, 1], ``(B, Hp, Wp, 3)``, from patch tokens ``(B, Hp, Wp, D)``; min-max scaled per component."""
    batch, hp, wp, dim = patches.shape
    flat = patches.reshape(-1, dim)
    first = principal_components(flat, 3)
    if foreground_threshold is None:
        rgb = _to_unit(first)
    else:
        # DINOv2 thresholds the first component, standardised, to find the foreground
        score = (first[:, 0] - first[:, 0].mean()) / first[:, 0].std().clamp_min(1e-8)
        foreground = score > foreground_threshold
        rgb = torch.zeros(flat.shape[0], 3)
        if int(foreground.sum()) >= 2:
            rgb[foreground] = _to_unit(principal_components(flat[foreground], 3))
    return rgb.reshape(batch, hp, wp, 3)
