"""Attention-map and patch-PCA pictures of a backbone on images, files or a recipe's dataset (PNG).

What ``dinomed.attention_maps`` / ``dinomed attention``, ``dinomed.pca_maps`` / ``dinomed pca`` and the report's
image grids run. Images go through the modality's eval transform (the model's input size and normalisation) and
are shown denormalised.

Example:
    >>> out = dinomed.attention_maps(backbone="runs/endo-1", inputs="frames/", out="attention/")
    >>> dinomed.pca_maps(backbone="runs/endo-1", inputs="frames/", out="pca/")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from dinomed.data.records import ImageDataset
from dinomed.eval.attention import jaccard_summary, last_block_attention, mask_jaccards, mass_masks, upsample
from dinomed.eval.evaluate import eval_backbone
from dinomed.eval.features import Transform, image_tokens
from dinomed.eval.pca import patch_pca
from dinomed.recipe import Recipe
from dinomed.report.figures import attention_figure, pca_figure
from dinomed.report.plots import to_png


@dataclass
class AttentionOutput:
    """PNG files written and, when the images have masks, Jaccard of the 60 %-mass masks vs ground truth."""

    files: list[Path] = field(default_factory=list)
    jaccard: dict[str, Any] | None = None


def input_dataset(inputs: str | Path, recipe: Recipe) -> ImageDataset:
    """An image file or a folder of images as a dataset read by the recipe's data settings (channels ...)."""
    from dinomed.data.datasets import build_dataset

    path = Path(inputs)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image file or folder")
    root = path if path.is_dir() else path.parent
    data = dataclasses.replace(recipe.data, source="folder", root=str(root), manifest=None)
    dataset = build_dataset(data, recipe.modality)
    if path.is_file():
        keep = [i for i, r in enumerate(dataset.records) if Path(r.image).resolve() == path.resolve()]
        if not keep:
            raise ValueError(f"{path}: not read as an image by the {recipe.modality} folder reader")
        dataset = dataset.subset(keep)
    return dataset


def prepare_inputs(
    recipe: Recipe, backbone: str | Path | nn.Module, inputs: str | Path | ImageDataset | None
) -> tuple[nn.Module, str, ImageDataset, Transform]:
    """``(model in eval mode, its label, dataset, eval transform)`` for the picture functions."""
    from dinomed.augment.multicrop import build_eval_transform

    model, label = eval_backbone(backbone, recipe)
    if isinstance(inputs, ImageDataset):
        dataset = inputs
    elif inputs is None:
        from dinomed.data.datasets import build_dataset

        dataset = build_dataset(recipe.data, recipe.modality)
    else:
        dataset = input_dataset(inputs, recipe)
    transform = build_eval_transform(recipe.modality, recipe.augment.global_size, recipe.data.channels)
    return model.eval(), label, dataset, transform


def _display(image: torch.Tensor, modality: str) -> np.ndarray:
    from dinomed.augment.multicrop import denormalize

    return denormalize(image, modality).clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def spread_indices(size: int, count: int) -> list[int]:
    """``count`` indices evenly spaced over a dataset of ``size``: video sets list frames in order, so the first few
    would be near-copies of one scene."""
    count = min(count, size)
    return [i * size // count for i in range(count)]


def _sample_name(sample: dict[str, Any], index: int) -> str:
    """File name of a sample for figure titles; non-file sources (``phantom://oct/0/3``) keep their whole id."""
    path = str(sample.get("meta", {}).get("path", f"image {index}"))
    return path if "://" in path else Path(path).name


@torch.no_grad()
def attention_pngs(
    model: nn.Module, dataset: ImageDataset, transform: Transform, modality: str, *, keep: float = 0.6,
    count: int = 4, label: str = "",
) -> tuple[list[bytes], dict[str, Any] | None]:
    """One attention figure per image (``count`` spread over the dataset) and, when the images have masks, the
    Jaccard summary."""
    pngs: list[bytes] = []
    scores: list[list[float]] = []
    unions: list[float] = []
    for index in spread_indices(len(dataset), count):
        sample = dataset[index]
        mask = sample.get("mask")
        out = transform(sample["image"], mask=mask) if mask is not None else transform(sample["image"])
        image = out["image"].unsqueeze(0)
        attention = last_block_attention(model, image)
        maps = upsample(attention, image.shape[-2:])[0]
        masks = upsample(mass_masks(attention, keep), image.shape[-2:])[0]
        truth = (torch.as_tensor(out["mask"]) > 0) if mask is not None else None
        heads_j = None
        if truth is not None:
            heads_j, union = mask_jaccards(masks, truth)
            scores.append(heads_j)
            unions.append(union)
        name = _sample_name(sample, index)
        figure = attention_figure(
            _display(image[0], modality), maps.numpy(), masks.numpy(),
            truth=None if truth is None else truth.numpy(), jaccards=heads_j,
            title=f"{label} — {name} — last-block CLS attention, masks keep {keep:.0%} of the mass",
        )
        pngs.append(to_png(figure))
    return pngs, jaccard_summary(scores, unions, keep) if scores else None


def write_attention_maps(
    recipe: Recipe,
    backbone: str | Path | nn.Module,
    inputs: str | Path | ImageDataset | None,
    out_dir: str | Path,
    *,
    count: int = 8,
    keep: float | None = None,
    console: Console | None = None,
) -> AttentionOutput:
    """Write ``attention_<i>.png`` for ``count`` images spread over ``inputs`` (file, folder, dataset, or the
    recipe's data when ``None``); ``keep`` defaults to ``eval.attention_keep`` (0.6)."""
    model, label, dataset, transform = prepare_inputs(recipe, backbone, inputs)
    keep = recipe.eval.attention_keep if keep is None else keep
    pngs, summary = attention_pngs(model, dataset, transform, recipe.modality, keep=keep, count=count, label=label)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index, png in enumerate(pngs):
        files.append(out / f"attention_{index:03d}.png")
        files[-1].write_bytes(png)
    console = console or Console()
    console.print(f"Wrote {len(files)} attention figure(s) to {out}")
    if summary is not None:
        console.print(f"Jaccard vs masks over {summary['num_images']} image(s): best head {summary['best_head']} = "
                      f"{summary['best_head_jaccard']:.3f}, union {summary['union_jaccard']:.3f}, per head "
                      f"{[round(v, 3) for v in summary['per_head']]}")
    return AttentionOutput(files, summary)


@torch.no_grad()
def pca_png(
    model: nn.Module, dataset: ImageDataset, transform: Transform, modality: str, *, count: int = 8,
    foreground_threshold: float | None = None, label: str = "",
) -> bytes:
    """One grid: ``count`` images spread over the dataset and their jointly fitted patch-PCA colouring."""
    if len(dataset) == 0:
        raise ValueError("no images to show: the input dataset is empty")
    images = torch.stack([transform(dataset[i]["image"])["image"] for i in spread_indices(len(dataset), count)])
    _, patches = image_tokens(model.eval(), images)
    colours = patch_pca(patches, foreground_threshold)
    figure = pca_figure([_display(im, modality) for im in images], [c.numpy() for c in colours],
                        title=f"{label} — patch features, PCA components 1-3 as RGB")
    return to_png(figure)


def write_pca_maps(
    recipe: Recipe,
    backbone: str | Path | nn.Module,
    inputs: str | Path | ImageDataset | None,
    out_dir: str | Path,
    *,
    count: int = 8,
    foreground_threshold: float | None = None,
    console: Console | None = None,
) -> Path:
    """Write ``pca.png`` (DINOv2-style PCA of patch features) for ``count`` images spread over ``inputs``."""
    model, label, dataset, transform = prepare_inputs(recipe, backbone, inputs)
    png = pca_png(model, dataset, transform, recipe.modality, count=count,
                  foreground_threshold=foreground_threshold, label=label)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pca.png").write_bytes(png)
    (console or Console()).print(f"Wrote {out / 'pca.png'}")
    return out / "pca.png"
