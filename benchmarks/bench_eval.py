"""Evaluation benchmark: does a quick DINO pretrain beat random init on real data, and what does evaluation cost?

``tables`` (the default) writes ``benchmarks/results/eval.md`` and README images in ``docs/images/``:

1. **CVC-ClinicDB** (polyp frames, grouped by video sequence): Jaccard of the last-block CLS attention masks
   (60 % of the mass, DINO Fig. 3 / Table 7) against the polyp masks, best head and union of heads, on the test
   split, pretrained backbone vs random init; attention overlays of one frame for both.
2. **HIT-UAV** object crops (thermal, grouped by frame) and **OCT** B-scans (grouped by patient): weighted kNN
   (k=20, T=0.07) and linear-probe balanced accuracy, pretrained vs random init.

Each pretrained backbone is a quick DINO run on that data set's own images (no labels), made by this script when
``--runs`` does not hold it yet; the exact ``dinomed pretrain`` command is written next to the table. CPU load
(``os.getloadavg``) and wall times are recorded with every number, since the machine may be shared.

``throughput`` times feature extraction, attention maps, kNN and a linear-probe sweep on synthetic inputs.

Usage: ``python benchmarks/bench_eval.py [tables] [--runs /tmp/evalruns] [--data ../shared/data]`` or
``python benchmarks/bench_eval.py throughput [--smoke]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from dinomed.eval.attention import attention_jaccard, last_block_attention, mass_masks
from dinomed.eval.features import image_tokens
from dinomed.eval.knn import knn_classify
from dinomed.eval.linear import linear_probe
from dinomed.models.backbones import create_backbone

ROOT = Path(__file__).resolve().parents[1]
console = Console()

# CPU-sized pretraining: the --quick profile (ViT-Ti/16, 2x112 + 4x48 crops, K=1024) with one loader worker.
QUICK = ["data.num_workers=1"]


@dataclass
class Spec:
    """One real data set: the recipe, the ``data`` overrides that read it, and its pretraining schedule."""

    name: str
    recipe: str
    data: list[str]
    schedule: list[str]

    def overrides(self, data_root: Path) -> list[str]:
        return [s.replace("{data}", str(data_root)) for s in self.data]

    def pretrain_command(self, data_root: Path, runs: Path) -> str:
        sets = [*self.overrides(data_root), *self.schedule, *QUICK, f"train.output_dir={runs}",
                f"train.run_name={self.name}"]
        return f"dinomed pretrain --recipe {self.recipe} --quick " + " ".join(f"--set {shlex.quote(s)}" for s in sets)


SPECS = {
    "cvc": Spec("cvc-quick", "endoscopy",
                ["data.source=manifest", "data.manifest={data}/endoscopy/cvc-clinicdb/index.csv",
                 "data.columns={group: sequence}"], ["train.epochs=8"]),
    "oct": Spec("oct-quick", "oct",
                ["data.source=manifest", "data.manifest={data}/oct/index.csv", "data.columns={group: patient_id}"],
                ["train.epochs=12", "optim.warmup_epochs=1"]),
    "hituav": Spec("hituav-quick", "thermal",
                   ["data.source=coco", "data.annotations={data}/thermal/hit-uav/annotations.json"],
                   ["train.epochs=1", "optim.warmup_epochs=0.1"]),
}


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def pretrained_run(spec: Spec, data_root: Path, runs: Path) -> tuple[Path, str]:
    """``(run dir, how it was obtained)``: reuse a finished run of that name, else pretrain it now."""
    run_dir = runs / spec.name
    if (run_dir / "export" / "backbone.safetensors").is_file():
        return run_dir, "reused"
    from dinomed.api import pretrain

    start, before = time.perf_counter(), load()
    pretrain(spec.recipe, overrides=[*spec.overrides(data_root), *spec.schedule, *QUICK, f"train.output_dir={runs}",
                                     f"train.run_name={spec.name}"], quick=True, console=console)
    return run_dir, f"{time.perf_counter() - start:.0f} s, load {before} -> {load()}"


def small_png(png: bytes) -> bytes:
    """The PNG with a 256-colour adaptive palette: README images stay well under 300 KB."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def attention_table(spec: Spec, run_dir: Path, images: Path, size: int) -> tuple[list[list[Any]], list[str]]:
    """Jaccard rows (pretrained, random) on the grouped test split at ``size`` px, and the overlay PNGs written."""
    from dinomed.augment.multicrop import build_eval_transform
    from dinomed.data.datasets import build_dataset
    from dinomed.data.readers import read_mask
    from dinomed.data.splits import splits_for
    from dinomed.eval.evaluate import eval_backbone
    from dinomed.recipe import load_recipe
    from dinomed.report.visuals import attention_pngs

    recipe = load_recipe(run_dir / "config.yaml", overrides=[f"augment.global_size={size}"])
    dataset = build_dataset(recipe.data, recipe.modality)
    test = dataset.subset(splits_for(dataset, recipe.data)["test"])
    transform = build_eval_transform(recipe.modality, size, recipe.data.channels)
    # the overlay shows the test frame with the largest polyp, where a head has something to find
    largest = max(range(len(test)), key=lambda i: int((read_mask(test.records[i].mask) > 0).sum()))
    shown = test.subset([largest])
    rows, files = [], []
    for name, backbone in (("DINO quick pretrain", run_dir), ("random init", "random")):
        model, _ = eval_backbone(backbone, recipe)
        start, before = time.perf_counter(), load()
        result = attention_jaccard(model, test, transform, keep=recipe.eval.attention_keep)
        seconds = time.perf_counter() - start
        best = f"{result['best_head_jaccard']:.3f} (head {result['best_head']})"
        rows.append([name, size, result["num_images"], best,
                     f"{result['union_jaccard']:.3f}", " / ".join(f"{v:.3f}" for v in result["per_head"]),
                     f"{seconds:.0f} s, load {before}"])
        pngs, _ = attention_pngs(model, shown, transform, recipe.modality, keep=recipe.eval.attention_keep, count=1,
                                 label=name)
        path = images / f"attention_endoscopy_{'pretrained' if backbone == run_dir else 'random'}.png"
        path.write_bytes(small_png(pngs[0]))
        files.append(str(path.relative_to(ROOT)))
    return rows, files


def probe_rows(spec: Spec, run_dir: Path, cache: Path) -> list[list[Any]]:
    """kNN and linear-probe rows (pretrained, random) on the run's data and grouped splits."""
    from dinomed.api import evaluate

    rows = []
    sets = [f"eval.cache_dir={cache}", "data.num_workers=0"]
    for method in ("knn", "linear"):
        for name, backbone in (("DINO quick pretrain", run_dir), ("random init", "random")):
            start, before = time.perf_counter(), load()
            tag = "random" if backbone == "random" else "pretrained"
            result = evaluate(run_dir / "config.yaml", backbone=backbone, method=method, overrides=sets,
                              out=cache / f"{spec.name}-{method}-{tag}.json")
            seconds = time.perf_counter() - start
            setting = f"k={result.params['k']}" if method == "knn" else f"lr={result.params['best_lr']}"
            val = f"{result.metrics['val']['balanced_accuracy']:.3f}"
            rows.append([spec.name.removesuffix("-quick"), method, name, val,
                         f"{result.metrics['test']['balanced_accuracy']:.3f}", f"{result.metrics['test']['top1']:.3f}",
                         setting, f"{seconds:.0f} s, load {before}"])
    return rows


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(str(v) for v in row) + " |" for row in rows)])


def tables(args: argparse.Namespace) -> None:
    data_root, runs = Path(args.data).resolve(), Path(args.runs)
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    cache = runs / "eval-cache"
    runs_info = {key: pretrained_run(spec, data_root, runs) for key, spec in SPECS.items()
                 if not (key == "cvc" and args.cvc_run)}
    if args.cvc_run:
        runs_info["cvc"] = (Path(args.cvc_run), f"given (--cvc-run {args.cvc_run})")
    attention_rows, files = attention_table(SPECS["cvc"], runs_info["cvc"][0], images, args.attention_size)
    rows = [row for key in ("oct", "hituav") for row in probe_rows(SPECS[key], runs_info[key][0], cache)]
    commands = "\n".join(SPECS[key].pretrain_command(data_root, runs) + f"   # {info}"
                         for key, (_, info) in runs_info.items())
    text = f"""# Evaluation on real data: quick DINO pretrain vs random init

Written on {time.strftime('%Y-%m-%d %H:%M')} by
`python benchmarks/bench_eval.py tables --runs {runs} --data {data_root}`
({os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads; the cores are shared, so
every timing carries the 1/5/15-min load average at its start). ViT-Ti/16, `--quick` profile (2x112 + 4x48 crops),
100-300 optimisation steps of 16 images per data set (commands below): minutes of CPU, far from a converged
pretrain. Unless a run is given, pretraining sees every image of its data set without labels (the test images
included); splits are grouped (sequence / patient /
frame), so no group spans train and test.

## Pretraining commands (run by the script when `--runs` lacks them)

```
{commands}
```

## CVC-ClinicDB: attention masks vs polyp masks (Jaccard, test split, {args.attention_size} px input)

Last-block CLS attention of each head, thresholded to keep 60 % of its mass, against the ground-truth polyp mask.
Best head = the head with the best mean over the images (a fixed head, as in the DINO paper).

{markdown(["backbone", "input px", "frames", "best head", "union of heads", "per head", "time"], attention_rows)}

Overlays (the test frame with the largest polyp; green = ground truth): {", ".join(f"`{f}`" for f in files)}

## HIT-UAV object crops and OCT B-scans: frozen-feature classification (balanced accuracy)

kNN: weighted, k=20 (clipped to the train split), T=0.07, CLS features. Linear probe: learning rate swept over
{{1e-3 ... 1e-1}} and chosen on val, 100 epochs. Input = the pretrain size (112 px). HIT-UAV: 5 classes (Person,
Car, Bicycle, OtherVehicle, DontCare; the last two have < 20 crops), one crop per box with 10 % context.
OCT: 6 classes (AMD, CNV, DME, DRUSEN, NORMAL, VID); class is confounded with source and view (AMD/VID are OCTDL
full scans with drawn contours, most CNV/DME/DRUSEN are retina crops), so high scores partly read the view.

{markdown(["data", "method", "backbone", "val bal. acc", "test bal. acc", "test top-1", "chosen", "time"], rows)}
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(text)
    console.print(f"Wrote {out}")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(args: argparse.Namespace) -> None:
    """Feature extraction, attention maps, kNN and a linear-probe sweep on synthetic inputs (one rich table)."""
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
                image_tokens(model, images[i : i + batch])
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
    table = Table(title=f"dinomed eval benchmark — {args.arch} on {device}, load {load()}")
    for column in ("what", "size", "seconds", "items/s"):
        table.add_column(column, justify="right" if column in ("seconds", "items/s") else "left")
    for what, size, seconds, items in rows:
        table.add_row(what, size, f"{seconds:.3f}", "" if items is None else f"{items / seconds:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="tables", choices=("tables", "throughput"))
    parser.add_argument("--runs", default="runs/bench-eval", help="folder of the pretrain run dirs (made if missing)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared/data folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval.md"))
    parser.add_argument("--cvc-run", help="a CVC-ClinicDB pretrain run to use instead of pretraining one (e.g. "
                        "bench_label_scarce.py's, which saw the train sequences only)")
    parser.add_argument("--attention-size", type=int, default=224, help="input side for the CVC attention maps")
    parser.add_argument("--arch", default="vit_small_patch16_224", help="throughput: architecture")
    parser.add_argument("--size", type=int, default=224, help="throughput: image side")
    parser.add_argument("--images", type=int, default=256, help="throughput: images for extraction / attention")
    parser.add_argument("--bank", type=int, default=20000, help="throughput: kNN training features")
    parser.add_argument("--queries", type=int, default=5000, help="throughput: kNN test features")
    parser.add_argument("--smoke", action="store_true", help="throughput: ViT-Ti at 32 px, tiny sizes")
    args = parser.parse_args()
    if args.command == "tables":
        tables(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
