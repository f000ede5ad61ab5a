"""Multi-crop throughput: can the data loader keep the pretraining step fed?

For the README demo config (``load_recipe("oct", quick=True)``: 2x112 + 4x48 crops, batch 16, 128x128 phantom
sources) and every modality preset, it measures

1. **multi-crop img/s**: source images per second through ``MultiCrop`` in this process (images pre-loaded, so
   only augmentation is timed);
2. **loader img/s**: images per second out of a ``DataLoader`` over ``MultiCropDataset`` with the recipe's
   ``data.num_workers`` (loading + augmentation + collation, as pretraining sees it);
3. with ``--step-img-per-s X`` (the pretrain step's rate, from ``bench_pretrain.py``): loader / step. Below 3x
   the step will wait for data once the machine is busy.

``--real /work/shared/data`` adds rows for the CVC-ClinicDB, HIT-UAV and OCT sample folders when present.

Usage: ``python benchmarks/bench_multicrop.py [--step-img-per-s 40] [--real ../shared/data] [--images 64]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from dinomed.augment.multicrop import MultiCrop, MultiCropDataset, build_multicrop
from dinomed.data.datasets import build_dataset
from dinomed.data.records import ImageDataset
from dinomed.recipe import Recipe, load_recipe

console = Console()
CHANNELS = {"oct": 1, "endoscopy": 3, "thermal": 1, "natural": 3}
# Real sample folders under --real: (modality, overrides pointing the recipe at them).
REAL = {
    "oct": ("oct/index.csv", ["data.source=manifest", "data.manifest={path}"]),
    "endoscopy": ("endoscopy/cvc-clinicdb/images", ["data.source=folder", "data.root={path}"]),
    "thermal": ("thermal/hit-uav", ["data.source=folder", "data.root={path}"]),
}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the backend already runs OpenCV single-threaded


def multicrop_rate(dataset: ImageDataset, multicrop: MultiCrop, images: int) -> float:
    """Source images per second through the multi-crop alone (pixels loaded beforehand)."""
    pixels = [dataset[i % len(dataset)]["image"] for i in range(images)]
    multicrop(pixels[0], 0)  # warm-up
    start = time.perf_counter()
    for i, image in enumerate(pixels):
        multicrop(image, i)
    return images / (time.perf_counter() - start)


def loader_rate(dataset: ImageDataset, multicrop: MultiCrop, recipe: Recipe, batches: int) -> float:
    """Images per second out of the pretraining DataLoader (workers from ``data.num_workers``)."""
    workers = recipe.data.num_workers
    loader = DataLoader(
        MultiCropDataset(dataset, multicrop, seed=0), batch_size=recipe.train.batch_size, shuffle=True,
        num_workers=workers, worker_init_fn=_worker_init if workers else None, drop_last=True,
        timeout=120 if workers else 0,  # a stuck worker fails the row instead of hanging the benchmark
    )
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            seen += next(it)[0].shape[0]
        except StopIteration:
            break
    return seen / (time.perf_counter() - start)


def _row(table: Table, name: str, source: str, recipe: Recipe, dataset: ImageDataset, args: argparse.Namespace) -> None:
    multicrop = build_multicrop(recipe.modality, recipe.augment, recipe.data.channels)
    size = "x".join(str(s) for s in dataset[0]["image"].shape[:2])
    crop_rate = multicrop_rate(dataset, multicrop, args.images)
    load_rate = loader_rate(dataset, multicrop, recipe, args.batches)
    ratio = f"{load_rate / args.step_img_per_s:.1f}x" if args.step_img_per_s else "—"
    table.add_row(name, source, size, f"{crop_rate:.0f}", f"{load_rate:.0f}", ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step-img-per-s", type=float, default=None, help="pretrain step rate to compare against")
    parser.add_argument("--real", type=Path, default=None, help="shared data folder (CVC-ClinicDB, HIT-UAV, OCT)")
    parser.add_argument("--images", type=int, default=64, help="images timed through the multi-crop")
    parser.add_argument("--batches", type=int, default=6, help="loader batches timed")
    parser.add_argument("--modalities", nargs="+", default=list(CHANNELS), choices=list(CHANNELS))
    args = parser.parse_args()

    base = load_recipe("oct", quick=True)
    aug = base.augment
    table = Table(
        title=f"multi-crop {aug.global_crops}x{aug.global_size} + {aug.local_crops}x{aug.local_size}, "
        f"batch {base.train.batch_size}, {base.data.num_workers} loader workers"
    )
    for column in ("modality", "source", "image", "multi-crop img/s (1 proc)", "loader img/s", "loader / step"):
        table.add_column(column, justify="right" if "/" in column else "left")
    for modality in args.modalities:
        recipe = load_recipe("oct", overrides=[f"modality={modality}", f"data.channels={CHANNELS[modality]}"], quick=True)
        _row(table, modality, "phantom", recipe, build_dataset(recipe.data, modality), args)
        if args.real is not None and modality in REAL:
            rel, overrides = REAL[modality]
            path = args.real / rel
            if not path.exists():
                console.print(f"[yellow]skipping real {modality}: {path} not found[/]")
                continue
            real = load_recipe(
                "oct", overrides=[f"modality={modality}", f"data.channels={CHANNELS[modality]}",
                        *(o.format(path=path) for o in overrides)], quick=True,
            )
            _row(table, modality, path.parent.name if path.is_file() else path.name, real,
                 build_dataset(real.data, modality), args)
    console.print(table)
    if args.step_img_per_s:
        console.print(f"step rate {args.step_img_per_s:g} img/s; target: loader / step >= 3x")


if __name__ == "__main__":
    main()
