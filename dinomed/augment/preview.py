"""Augmentation preview: a PNG grid of original images next to their DINO global and local views.

Augmentations are easy to get silently wrong (a flipped retina, a hue shift that turns mucosa green), so look
before pretraining::

    dinomed.augment_preview("oct", quick=True, out="oct_views.png")   # or: dinomed augment-preview --recipe oct

Each row is one sample: the original, then the global views, then the local views (at their own resolution,
shown in equal-sized cells; the titles give the pixel size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dinomed.augment.multicrop import MultiCrop, as_image
from dinomed.data.records import ImageDataset

__all__ = ["save_preview", "data_settings"]


def _show(ax, image: np.ndarray, title: str) -> None:  # noqa: ANN001 - matplotlib Axes
    if image.shape[2] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def save_preview(
    dataset: ImageDataset, multicrop: MultiCrop, out: str | Path, *, samples: int = 4, seed: int = 0, title: str = ""
) -> Path:
    """Write the grid for the first ``samples`` items of ``dataset`` to ``out`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(samples, len(dataset))
    if rows < 1:
        raise ValueError("the dataset is empty: nothing to preview")
    cols = 1 + len(multicrop)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows), squeeze=False)
    for r in range(rows):
        image = as_image(dataset[r]["image"], multicrop.channels)
        _show(axes[r, 0], image, f"original {image.shape[0]}x{image.shape[1]}")
        for c, crop in enumerate(multicrop.crops(image, seed + r)):
            kind = f"global {c + 1}" if c < multicrop.global_crops else f"local {c + 1 - multicrop.global_crops}"
            _show(axes[r, c + 1], crop, f"{kind} ({crop.shape[0]}px)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def data_settings(data: str | Path) -> dict[str, str]:
    """Recipe settings pointing ``data`` at a manifest file (.csv / .json) or an image folder."""
    path = Path(data)
    if path.is_file() and path.suffix.lower() in (".csv", ".json"):
        return {"data.source": "manifest", "data.manifest": str(path)}
    if path.is_dir():
        return {"data.source": "folder", "data.root": str(path)}
    raise FileNotFoundError(f"--data {data}: expected an image folder or a .csv/.json manifest")
