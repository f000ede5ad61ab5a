"""Recipe section ``data``: where images come from and how they are read."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option

DATA_SOURCES = ("phantom", "folder", "manifest", "coco")


@dataclass
class PhantomConfig:
    """Built-in synthetic data used when a recipe names no data root."""

    count: int = option(1024, "number of generated images", min=1)
    size: tuple[int, int] = option((224, 224), "generated image height and width in pixels", min=32)
    seed: int = option(0, "generator seed; sample i is a pure function of (seed, i)")


@dataclass
class DataConfig:
    """Where the images come from; ``source: phantom`` (or no ``root``) uses the built-in phantom of the modality."""

    source: str = option("phantom", "dataset type", choices=DATA_SOURCES)
    root: str | None = option(None, "folder holding the images (folder source) or the files a manifest points to")
    manifest: str | None = option(None, "CSV/JSON manifest with columns image, label, mask, depth, group")
    channels: int = option(1, "channels fed to the model: 1 (grayscale) or 3 (RGB)", choices=(1, 3))
    on_error: str = option("raise", "unreadable file: 'raise' stops, 'skip' drops it and reports", choices=("raise", "skip"))
    num_workers: int = option(2, "DataLoader worker processes", min=0)
    phantom: PhantomConfig = option(default_factory=PhantomConfig)
