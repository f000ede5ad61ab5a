"""Evaluation benchmark: feature-extraction throughput, kNN and linear-probe cost, attention-map cost.

Times, on synthetic inputs (so it needs no dataset): frozen-feature extraction (images/s) of a ViT, the weighted
kNN (k=20, T=0.07) of N test against M train features, one linear-probe sweep, and last-block attention maps.
Prints one rich table. Use ``--smoke`` for a seconds-long CPU check.

Usage: ``python benchmarks/bench_eval.py [--arch vit_small_patch16_224] [--size 224] [--images 256] [--smoke]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from dinomed.eval.attention import last_block_attention, mass_masks
from dinomed.eval.features import vit_tokens
from dinomed.eval.knn import knn_classify
from dinomed.eval.linear import linear_probe
from dinomed.models.backbones import create_backbone


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_small_patch16_224")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256, help="images for extraction / attention timing")
    parser.add_argument("--bank", type=int, default=20000, help="kNN training features")
    parser.add_argument("--queries", type=int, default=5000, help="kNN test features")
    parser.add_argument("--smoke", action="store_true", help="ViT-Ti at 32 px, tiny sizes")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.size, args.images, args.bank, args.queries = "vit_tiny_patch16_224", 32, 8, 500, 100
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _ = create_backbone(args.arch, in_chans=3, img_size=args.size)
    model = model.eval().to(device)
    images = torch.randn(args.images, 3, args.size, args.size, device=device)
    batch = 64

    def extract() -> None:
        with torch.no_grad():
            for i in range(0, args.images, batch):
                vit_tokens(model, images[i : i + batch])
        if device.type == "cuda":
            torch.cuda.synchronize()

    def attention() -> None:
        for i in range(0, args.images, batch):
            mass_masks(last_block_attention(model, images[i : i + batch]))
        if device.type == "cuda":
            torch.cuda.synchronize()

    dim = model.embed_dim
    bank, labels = torch.randn(args.bank, dim), torch.randint(0, 10, (args.bank,))
    queries = torch.randn(args.queries, dim)
    probe_data = (bank[:2000], labels[:2000])
    rows = [
        ("feature extraction", f"{args.images} images {args.size}px", _timed(extract), args.images),
        ("attention + 60 % masks", f"{args.images} images", _timed(attention), args.images),
        ("weighted kNN k=20", f"{args.queries} x {args.bank} x {dim}",
         _timed(lambda: knn_classify(bank, labels, queries, k=20, T=0.07, num_classes=10)), args.queries),
        ("linear probe, 3 lrs x 10 epochs", f"2000 x {dim}",
         _timed(lambda: linear_probe(probe_data, probe_data, probe_data, 10, lrs=[1e-3, 1e-2, 1e-1], epochs=10)), None),
    ]
    table = Table(title=f"dinomed eval benchmark — {args.arch} on {device}")
    for column in ("what", "size", "seconds", "items/s"):
        table.add_column(column, justify="right" if column in ("seconds", "items/s") else "left")
    for what, size, seconds, items in rows:
        table.add_row(what, size, f"{seconds:.3f}", "" if items is None else f"{items / seconds:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
