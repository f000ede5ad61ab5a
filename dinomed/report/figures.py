"""Image grids people look at: attention overlays with their mass masks, and patch-PCA colourings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _show(ax: Axes, image: np.ndarray, title: str) -> None:
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _overlay_mask(ax: Axes, mask: np.ndarray) -> None:
    """Kept patches tinted, the rest of the image left as it is (a plain imshow of 0/1 would tint everything)."""
    ax.imshow(np.ma.masked_where(~mask.astype(bool), mask.astype(float)), alpha=0.5, cmap="autumn", vmin=0, vmax=1)


def attention_figure(
    image: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    *,
    truth: np.ndarray | None = None,
    jaccards: Sequence[float] | None = None,
    title: str = "",
) -> Figure:
    """Row 1: the image, the union of head masks, each head's attention over the image; row 2: each head's mask.

    ``image`` (H, W, C) in [0, 1]; ``maps`` (heads, H, W); ``masks`` (heads, H, W) bool; ``truth`` (H, W) draws
    the ground-truth outline in green and ``jaccards`` (one per head) labels the masks.
    """
    heads = maps.shape[0]
    cols = heads + 2
    figure = Figure(figsize=(1.8 * cols, 3.8))
    grid = figure.subplots(2, cols, squeeze=False)
    _show(grid[0, 0], image, "image")
    _show(grid[0, 1], image, "union of head masks")
    _overlay_mask(grid[0, 1], masks.any(0))
    for head in range(heads):
        _show(grid[0, head + 2], image, f"head {head}")
        grid[0, head + 2].imshow(maps[head], alpha=0.6, cmap="inferno")
        label = f"mask {head}" + (f"  J={jaccards[head]:.2f}" if jaccards is not None else "")
        _show(grid[1, head + 2], image, label)
        _overlay_mask(grid[1, head + 2], masks[head])
    for ax in (grid[1, 0], grid[1, 1]):
        ax.axis("off")
    if truth is not None:
        for ax in grid.ravel():
            if ax.images:
                ax.contour(truth > 0, levels=[0.5], colors="lime", linewidths=0.8)
        grid[1, 0].text(0, 0.5, "green: ground truth", fontsize=8, transform=grid[1, 0].transAxes)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def pca_figure(images: Sequence[np.ndarray], colours: Sequence[np.ndarray], *, title: str = "") -> Figure:
    """Row 1: the images; row 2: their patch-PCA RGB (patch grid shown as blocks, no smoothing)."""
    count = len(images)
    if count == 0 or count != len(colours):
        raise ValueError(f"pca_figure needs one colouring per image, got {count} images and {len(colours)} colourings")
    figure = Figure(figsize=(2.0 * count, 4.2))
    grid = figure.subplots(2, count, squeeze=False)
    for index, (image, rgb) in enumerate(zip(images, colours)):
        _show(grid[0, index], image, f"image {index}")
        grid[1, index].imshow(rgb, interpolation="nearest")
        grid[1, index].set_title("PCA 1-3 as RGB", fontsize=8)
        grid[1, index].axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure
