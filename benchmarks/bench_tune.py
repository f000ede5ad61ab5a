"""Tuning benchmark: tuned vs the recipe's default hyper-parameters at 10 % labels, same backbone, same test split.

For each dataset and seed (``data.split_seed`` = seed: new grouped split and labelled subset, identical for both
arms), ``dinomed.tune`` searches with grouped CV inside the labelled subset and retrains the best, and a plain
``dinomed.finetune`` runs the recipe defaults; both test once on the same held-out sequences / patients.
Prints a markdown table (mean ± std over seeds) and trials/hour on this machine.

Datasets: CVC-ClinicDB polyp segmentation (``endoscopy/cvc-clinicdb/index.csv``, group column ``sequence``) and
OCT classification (``oct/index.csv``, group column ``patient_id``), under ``--data`` (default ../shared/data).

Usage: ``python benchmarks/bench_tune.py [--backbone RUN_DIR] [--trials 30] [--seeds 0 1 2] [--smoke]``.
``--smoke`` runs 2 trials of ViT-Ti at 32 px on a few images: a seconds-to-minutes check that the script works.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.console import Console

from dinomed.finetune.api import finetune
from dinomed.finetune.metrics import PRIMARY
from dinomed.tune.api import tune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = {  # name: (recipe, task, manifest, data overrides)
    "cvc-clinicdb": ("endoscopy", "seg", "endoscopy/cvc-clinicdb/index.csv", ["data.columns={group: sequence}"]),
    "oct": ("oct", "cls", "oct/index.csv", ["data.columns={group: patient_id}"]),
}
SMOKE = ["finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4", "data.num_workers=0",
         "model.arch=vit_tiny_patch16_224", "tune.folds=2", "tune.space={lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"]


def _summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def run_dataset(name: str, args: argparse.Namespace, console: Console) -> dict[str, object]:
    recipe, task, manifest, data_sets = TASKS[name]
    metric = PRIMARY[task][0]
    base = ["data.source=manifest", f"data.manifest={args.data / manifest}", *data_sets, *(SMOKE if args.smoke else [])]
    tuned, default, rates = [], [], []
    for seed in args.seeds:
        sets = [*base, f"data.split_seed={seed}", f"finetune.seed={seed}", f"tune.seed={seed}"]
        out = args.out / name / f"seed{seed}"
        result = tune(recipe, task=task, backbone=args.backbone, labels=args.labels, trials=args.trials,
                      overrides=sets, out=out / "tune", console=console)
        tuned.append(result.summary["final"]["test"][metric])
        rates.append(result.summary["trials_per_hour"] or 0.0)
        plain = finetune(recipe, task=task, backbone=args.backbone, labels=args.labels, overrides=sets,
                         out=out / "default", console=console)
        default.append(plain.metrics["test"][metric])
    return {"dataset": name, "metric": metric, "tuned": tuned, "default": default, "trials_per_hour": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--backbone", default="random", help="pretrain run dir / export folder, same for both arms")
    parser.add_argument("--labels", type=float, default=0.1, help="labelled fraction of the train split")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_tune"))
    parser.add_argument("--smoke", action="store_true", help="2 trials, ViT-Ti at 32 px, one seed")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.seeds = 2, args.seeds[:1]
    console = Console(stderr=True)
    rows = [run_dataset(name, args, console) for name in args.datasets]
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "bench_tune.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(f"\nTuned ({args.trials} trials) vs recipe defaults, {args.labels:g} labels, backbone {args.backbone}, "
          f"seeds {args.seeds} (test split, mean ± std)\n")
    print("| dataset | metric | default | tuned | trials/hour |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['dataset']} | {row['metric']} | {_summary(row['default'])} | {_summary(row['tuned'])} | "
              f"{statistics.mean(row['trials_per_hour']):.1f} |")


if __name__ == "__main__":
    main()
