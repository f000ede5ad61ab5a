"""Frozen ViT features: token layout, batched extraction, and a safetensors cache keyed by what produced them.

kNN, the linear probe and the report all read the same features, and a backbone is evaluated on the same data
again and again (sweeps, reports, baselines), so extraction runs once per (backbone weights, dataset records,
transform) and lands in ``<cache_dir>/<key>.safetensors``. The key hashes the weights themselves, so a
re-exported backbone with new weights never reuses stale features, and a copied weights file still hits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dinomed.data.records import ImageDataset
from dinomed.models.backbones import is_hierarchical, is_vit
from dinomed.engine import progress_bar
from dinomed.files import atomic_write

Transform = Callable[..., Any]  # build_eval_transform's callable: image (H, W, C) -> {"image": (C, S, S), ...}
DEFAULT_CACHE = Path.home() / ".cache" / "dinomed" / "features"


def image_tokens(backbone: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embedding (B, D), patches (B, Hp, Wp, D))`` of a backbone's final (normed) features.

    A ViT's embedding is its CLS token (prefix tokens, CLS then registers, come first in timm's layout); a
    hierarchical backbone (NAT) has no CLS, so its embedding is the global average of the last stage map, which
    is also what its ``forward`` returns and what DINO trained.
    """
    if is_hierarchical(backbone):
        stage_map = backbone.forward_features(images)
        return stage_map.mean(dim=(-2, -1)), stage_map.permute(0, 2, 3, 1)
    if not is_vit(backbone):
        raise ValueError(
            f"{type(backbone).__name__} is neither a timm Vision Transformer nor a NAT; embeddings and patch tokens "
            "need a backbone such as vit_small_patch16_224 or nat_mini"
        )
    tokens = backbone.forward_features(images)
    prefix = getattr(backbone, "num_prefix_tokens", 1)
    ph, pw = backbone.patch_embed.patch_size
    grid = (images.shape[-2] // ph, images.shape[-1] // pw)
    patches = tokens[:, prefix:]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"expected {grid[0]}x{grid[1]} patch tokens for a {tuple(images.shape[-2:])} input, "
                         f"got {patches.shape[1]}")
    return tokens[:, 0], patches.reshape(patches.shape[0], *grid, patches.shape[-1])


@dataclass
class Features:
    """Per-image CLS and mean patch token of a dataset, with labels (-1 where unlabelled)."""

    cls: torch.Tensor
    patch_mean: torch.Tensor
    labels: torch.Tensor

    def select(self, indices: Sequence[int]) -> "Features":
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Features(self.cls[index], self.patch_mean[index], self.labels[index])

    def vectors(self, avgpool_patches: bool = False) -> torch.Tensor:
        """CLS alone (kNN, as DINO) or ``[CLS, mean patch]`` (DINO's linear probe with --avgpool_patchtokens)."""
        return torch.cat([self.cls, self.patch_mean], dim=1) if avgpool_patches else self.cls


class _EvalImages(Dataset):
    """Dataset items through the eval transform: ``(image (C, S, S), label or -1)``."""

    def __init__(self, dataset: ImageDataset, transform: Transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.dataset[index]
        out = self.transform(sample["image"])
        label = sample.get("label")
        return out["image"], -1 if label is None else int(label)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: ImageDataset,
    transform: Transform,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    console: Console | None = None,
) -> Features:
    """Run the frozen backbone (eval mode) over ``dataset`` once, with a progress bar."""
    backbone = backbone.eval().to(device)
    loader = DataLoader(_EvalImages(dataset, transform), batch_size=batch_size, num_workers=num_workers)
    cls, means, labels = [], [], []
    with progress_bar(f"features of {len(dataset)} images", console, transient=True) as progress:
        task = progress.add_task("features", total=len(dataset))
        for images, batch_labels in loader:
            token, patches = image_tokens(backbone, images.to(device))
            cls.append(token.float().cpu())
            means.append(patches.flatten(1, 2).mean(dim=1).float().cpu())
            labels.append(batch_labels)
            progress.advance(task, images.shape[0])
    if not cls:
        raise ValueError("cannot extract features of an empty dataset")
    return Features(torch.cat(cls), torch.cat(means), torch.cat(labels).long())


def module_digest(model: nn.Module) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes, bytes): the same digest whether it came from a
    safetensors file, a run directory or memory, and a new one as soon as any weight changes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_digest(dataset: ImageDataset) -> str:
    """SHA-256 of the records (paths, labels, masks, groups, meta) and class names, in order."""
    payload = {
        "modality": dataset.modality,
        "classes": dataset.class_names,
        "records": [dataclasses.asdict(r) for r in dataset.records],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def transform_key(transform: Transform) -> str | None:
    """What identifies a transform's output: its ``cache_id`` when it declares one (the eval transform does),
    else a hash of its pickled state; ``None`` for a transform that cannot be pickled (a lambda or closure),
    whose features are then never cached, since nothing tells two such transforms apart."""
    declared = getattr(transform, "cache_id", None)
    if declared:
        return str(declared)
    try:
        return "pickle:" + hashlib.sha256(pickle.dumps(transform)).hexdigest()
    except Exception:  # noqa: BLE001 - any pickling failure means "no stable identity"
        return None


def cache_key(backbone: nn.Module, dataset: ImageDataset, transform: Transform) -> str | None:
    """Cache file stem: hash of the backbone weights, the dataset records and the transform (``None``: uncachable)."""
    made_by = transform_key(transform)
    if made_by is None:
        return None
    parts = f"{module_digest(backbone)}|{dataset_digest(dataset)}|{made_by}"
    return hashlib.sha256(parts.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    return Path(os.environ.get("DINOMED_CACHE_DIR", DEFAULT_CACHE))


def cached_features(
    backbone: nn.Module,
    dataset: ImageDataset,
    transform: Transform,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    console: Console | None = None,
) -> tuple[Features, Path | None, bool]:
    """Features from the cache, or extracted and stored; returns ``(features, cache file, was_cached)``.

    The cache file is ``None`` when the transform has no stable identity (see :func:`transform_key`).
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(backbone, dataset, transform)
    path = folder / f"{key}.safetensors" if key is not None else None
    if path is not None and path.is_file():
        stored = load_file(str(path))
        return Features(stored["cls"], stored["patch_mean"], stored["labels"]), path, True
    feats = extract_features(
        backbone, dataset, transform, batch_size=batch_size, device=device, num_workers=num_workers, console=console
    )
    if path is not None:
        tensors = {"cls": feats.cls.contiguous(), "patch_mean": feats.patch_mean.contiguous(), "labels": feats.labels}
        meta = {"transform": str(transform_key(transform)), "count": str(len(dataset))}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return feats, path, False
