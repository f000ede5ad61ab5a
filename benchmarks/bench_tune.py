"""Tuning benchmark: tuned vs the recipe's default hyper-parameters at 10 % labels, same backbone, same test split.

Per dataset, one study (``dinomed.tune``: grouped k-fold CV inside the labelled subset, TPE, pruning) runs on
grouped split 0; rerunning the script resumes it from its SQLite file. Then the best recipe (``best.yaml``) and
the recipe defaults are each trained on the same labelled subset with every ``--seeds`` training seed and tested
once on the same held-out sequences / patients. Prints a markdown table (mean ± std over seeds), the study's
trial states (complete / pruned / failed) and trials/hour on this machine, and writes it to
``benchmarks/results/tune.md``.

Datasets: CVC-ClinicDB polyp segmentation (``endoscopy/cvc-clinicdb/index.csv``, group column ``sequence``) and
OCT classification (``oct/index.csv``, group column ``patient_id``), under ``--data`` (default ../shared/data).

Usage: ``python benchmarks/bench_tune.py [--backbone RUN_DIR] [--quick] [--trials 20] [--seeds 0 1 2] [--set K=V ...]``;
rerunning the same command resumes the study and reuses finished runs.
``--smoke`` runs 2 trials of ViT-Ti at 32 px on a few images: a seconds-to-minutes check that the script works.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console

from dinomed.api import finetune, tune
from dinomed.finetuning.heads import head_class
from dinomed.finetuning.trainer import FINAL_METRICS
from dinomed.tuning.run import BEST_RECIPE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "tune.md"
TASKS = {  # name: (recipe, task, manifest, data overrides)
    "cvc-clinicdb": ("endoscopy", "seg", "endoscopy/cvc-clinicdb/index.csv", ["data.columns={group: sequence}"]),
    "oct": ("oct", "cls", "oct/index.csv", ["data.columns={group: patient_id}"]),
}
SMOKE = ["finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4", "data.num_workers=0",
         "model.arch=vit_tiny_patch16_224", "tune.folds=2", "tune.space={lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"]


def _summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def run_dataset(name: str, args: argparse.Namespace, console: Console) -> dict[str, object]:
    """One study on split 0, then best.yaml vs defaults over the training seeds; the table row."""
    recipe, task, manifest, data_sets = TASKS[name]
    metric = head_class(task).primary_metric
    base = ["data.source=manifest", f"data.manifest={args.data / manifest}", *data_sets, "data.split_seed=0",
            *(SMOKE if args.smoke else []), *args.set]
    out = args.out / name
    start = time.perf_counter()
    study = tune(recipe, task=task, backbone=args.backbone, labels=args.labels, trials=args.trials,
                 overrides=[*base, "tune.seed=0"], quick=args.quick, out=out / "tune", console=console)
    search_minutes = (time.perf_counter() - start) / 60
    tuned, default = [], []
    for seed in args.seeds:
        runs = {"tuned": (study.run_dir / BEST_RECIPE, [f"finetune.seed={seed}"], False),  # best.yaml is resolved
                "default": (recipe, [*base, f"finetune.seed={seed}"], args.quick)}
        for arm, (source, sets, quick) in runs.items():
            run_dir = out / f"{arm}-seed{seed}"
            if not (run_dir / FINAL_METRICS).is_file():  # a rerun of the script reuses finished runs
                finetune(source, task=task, backbone=args.backbone, labels=args.labels, overrides=sets, quick=quick,
                         out=run_dir, console=console)
            metrics = json.loads((run_dir / FINAL_METRICS).read_text(encoding="utf-8"))
            (tuned if arm == "tuned" else default).append(metrics["test"][metric])
    states = study.summary["states"]
    return {"dataset": name, "metric": metric, "tuned": tuned, "default": default,
            "trials": {k.lower(): v for k, v in states.items() if v}, "labelled": study.summary["labelled"],
            "test_images": study.summary["test_images"], "trials_per_hour": study.summary["trials_per_hour"],
            "search_minutes": search_minutes, "best_params": study.best_params}


def markdown(rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [f"Tuned ({args.trials}-trial study) vs recipe defaults at {args.labels:g} labels, backbone "
             f"`{args.backbone}`{', --quick profile' if args.quick else ''}; test split, mean ± std over training "
             f"seeds {args.seeds}.", "",
             "| dataset | metric | labelled | test images | default | tuned | trials (state: count) | trials/hour |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        states = ", ".join(f"{k} {v}" for k, v in row["trials"].items())
        lines.append(f"| {row['dataset']} | {row['metric']} | {row['labelled']} | {row['test_images']} | "
                     f"{_summary(row['default'])} | {_summary(row['tuned'])} | {states} | "
                     f"{row['trials_per_hour'] or 0:.0f} |")
    lines += ["", *(f"Best parameters ({row['dataset']}): `{json.dumps(row['best_params'])}`" for row in rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--backbone", default="random", help="pretrain run dir / export folder, same for both arms")
    parser.add_argument("--labels", type=float, default=0.1, help="labelled fraction of the train split")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the comparison")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for both arms and the search (e.g. finetune.image_size=112)")
    parser.add_argument("--quick", action="store_true", help="the CPU-sized --quick profile (ViT-Ti, 112 px)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_tune"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown results file")
    parser.add_argument("--smoke", action="store_true", help="2 trials, ViT-Ti at 32 px, one seed")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.seeds = 2, args.seeds[:1]
    console = Console(stderr=True)
    rows = [run_dataset(name, args, console) for name in args.datasets]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_tune.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    text = f"# bench_tune ({time.strftime('%Y-%m-%d %H:%M')})\n\n" + markdown(rows, args)
    if not args.smoke:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
