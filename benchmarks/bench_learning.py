"""Is it learning? The run's own verdict (collapse monitor + online probes) against held-out checks, on real cases.

Cases (each a ``--quick`` DINO run; the verdict is what the run prints at its end, from its own images only):

* ``oct-demo``      the README demo (OCT phantom); held-out check: weighted kNN on whole patients of another
                    generator seed, pretrained vs the same ViT at random init;
* ``cvc``           the endoscopy recipe on CVC-ClinicDB's train-split frames (grouped by sequence); held-out
                    check: the best head's attention Jaccard and RankMe on the *test* sequences' frames, and, with
                    ``--downstream-minutes``, LoRA segmentation at 10 % labels on this backbone vs a random ViT;
* ``cvc-collapsed`` the same data with DINO's textbook collapse forced (no centring: ``dino.center_momentum=1``,
                    a sharp teacher, a high lr);
* ``cvc+<set>``     one more CVC run per ``--variant KEY=VALUE[,KEY=VALUE]``: what changes a CVC run that does not learn.

Results: a rich table, ``benchmarks/results/learning.md`` and ``docs/images/is_it_learning.png`` (each probe
over the steps, as a difference to its random-init value).

Usage::

    python benchmarks/bench_learning.py --smoke
    python benchmarks/bench_learning.py --cvc-epochs 20 --downstream-minutes 4 --variant dino.teacher_temp=0.07
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import dinomed
from dinomed.engine import read_metrics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_label_scarce import data_overrides, in_subprocess, train_split_manifest  # noqa: E402

CVC = HERE.parents[1] / "shared" / "data" / "endoscopy" / "cvc-clinicdb"
RESULTS = HERE / "results" / "learning.md"
FIGURE = HERE.parent / "docs" / "images" / "is_it_learning.png"
QUIET = Console(quiet=True)
COLLAPSE = {"dino.center_momentum": 1.0, "dino.teacher_temp": 0.01, "dino.warmup_teacher_temp": 0.01,
            "dino.koleo_weight": 0, "optim.lr": 0.05}
SMOKE = {"augment.global_size": 32, "augment.local_size": 16, "augment.local_crops": 2, "train.batch_size": 8,
         "train.max_steps": 4, "model.out_dim": 256, "model.hidden_dim": 64, "model.bottleneck_dim": 32,
         "train.probe_every": 2, "train.probe_images": 16, "optim.warmup_epochs": 0, "data.phantom.count": 64}


def pretrain(args: argparse.Namespace, name: str, recipe: str, overrides: list[str]) -> tuple[Path, float]:
    """One quick DINO run (reused when the work folder already holds it); its run dir and minutes."""
    run_dir = args.work / name
    if (run_dir / "summary.json").is_file():
        return run_dir, float("nan")
    start = time.perf_counter()
    fixed = {**(SMOKE if args.smoke else {}), "train.output_dir": str(args.work), "train.run_name": name,
             "train.num_threads": args.threads}
    dinomed.pretrain(recipe, quick=True, console=Console(), overrides=[*overrides, *sets(fixed)])
    return run_dir, (time.perf_counter() - start) / 60


def sets(mapping: dict[str, Any]) -> list[str]:
    """``KEY=VALUE`` overrides (values as YAML reads them back)."""
    return [f"{key}={value}" for key, value in mapping.items()]


def oct_held_out(args: argparse.Namespace, run_dir: Path) -> str:
    """kNN balanced accuracy on whole patients the run never saw, pretrained vs random init."""
    from dinomed.data.phantoms import GROUP_SIZE, PhantomDataset

    size = tuple(dinomed.load_recipe(run_dir / "config.yaml").data.phantom.size)
    bank, test = (8 if args.smoke else 64) * GROUP_SIZE, (4 if args.smoke else 32) * GROUP_SIZE
    held_out = PhantomDataset("oct", bank + test, size, seed=101)
    splits = {"train": list(range(bank)), "test": list(range(bank, bank + test))}
    scores = [dinomed.knn_eval(run_dir / "config.yaml", backbone=b, dataset=held_out, splits=splits, console=QUIET)
              .metrics["test"]["balanced_accuracy"] for b in (run_dir, "random")]
    return f"held-out kNN {scores[0]:.3f} (rand {scores[1]:.3f})"


def cvc_held_out(args: argparse.Namespace, run_dir: Path) -> str:
    """The probes on the test sequences' frames (never seen in pretraining): RankMe and attention Jaccard."""
    import timm
    import torch

    from dinomed.augment.multicrop import build_eval_transform
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import splits_for
    from dinomed.finetuning.trainer import TaskView
    from dinomed.ssl.probes import ProbeSet, Probes, probe_indices

    recipe = dinomed.load_recipe(run_dir / "config.yaml")
    full = dinomed.load_recipe("endoscopy", quick=True, overrides=data_overrides(args.cvc, None))
    dataset = build_dataset(full.data, "endoscopy")
    test = splits_for(TaskView(dataset, "mask"), full.data).test
    chosen = [test[i] for i in probe_indices(test, recipe.train.probe_images, 0)]
    transform = build_eval_transform("endoscopy", recipe.augment.global_size, 3)
    probes = Probes(ProbeSet.from_dataset(dataset, chosen, transform))
    backbone = dinomed.load_backbone(run_dir)
    spec = backbone.dinomed_spec
    torch.manual_seed(recipe.train.seed)  # the run's own starting point, as the run's probes use
    random_init = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    mine, rand = probes.measure(backbone), probes.measure(random_init, suffix="_random")
    return (f"test frames: rankme {mine['rankme']:.0f} (rand {rand['rankme_random']:.0f}), jaccard "
            f"{mine.get('jaccard', float('nan')):.3f} (rand {rand.get('jaccard_random', float('nan')):.3f})")


def downstream(args: argparse.Namespace, run_dir: Path, name: str) -> dict[str, float]:
    """Test Dice of LoRA segmentation at 10 % labels on the run's backbone and on random init, equal minutes."""
    vit = [f"finetune.image_size={128 if not args.smoke else 32}", "finetune.batch_size=8", "finetune.epochs=100000",
           "finetune.patience=100000", "finetune.seed=0", "finetune.lr=0.001", "finetune.val_every=5",
           f"finetune.max_minutes={args.downstream_minutes}", f"train.num_threads={args.threads}"]
    dice = {}
    for label, backbone in (("dice", str(run_dir)), ("dice_random", "random")):
        out = args.work / f"{name}-lora-{label}"
        if label == "dice_random" and "dice_random" in args.cache:
            dice[label] = args.cache["dice_random"]
            continue
        job = {"task": "seg", "budget": 0.1, "seed": 0, "threads": args.threads, "method": "lora-x",
               "backbone": backbone, "overrides": [*data_overrides(args.cvc, 0.1), *vit], "out": str(out)}
        dice[label] = in_subprocess(job)["dice"]
    args.cache["dice_random"] = dice["dice_random"]
    return dice


def row(name: str, run_dir: Path, minutes: float, held_out: str, extra: dict[str, float]) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    last = [r for r in read_metrics(run_dir / "metrics.jsonl") if "rankme" in r][-1]
    probes = "  ".join(f"{k} {last[k]:.3g} (rand {last[k + '_random']:.3g})"
                       for k in ("rankme", "knn", "jaccard") if k in last)
    lora = (f"{extra['dice']:.3f} (rand {extra['dice_random']:.3f})" if extra else "-")
    return {"case": name, "steps": summary["step"], "minutes": f"{minutes:.1f}", "collapse": summary["collapse"],
            "verdict": summary["verdict"], "probes at the end": probes, "held-out check": held_out,
            "LoRA Dice 10 %": lora}


def figure(runs: dict[str, Path]) -> None:
    """Each probe minus its random-init value over the steps, one line per case."""
    from matplotlib.figure import Figure

    from dinomed.report.plots import to_png

    keys = ("rankme", "knn", "jaccard")
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
    for name, run_dir in runs.items():
        records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "rankme" in r]
        for ax, key in zip(axes, keys):
            points = [(r["step"], r[key] / r[f"{key}_random"] - 1 if key == "rankme" else r[key] - r[f"{key}_random"])
                      for r in records if key in r]
            if points:
                ax.plot(*zip(*points), marker=".", label=name)
    for ax, key in zip(axes, keys):
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{key} {'/ random - 1' if key == 'rankme' else '- random'}")
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    FIGURE.write_bytes(to_png(fig))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cvc", type=Path, default=CVC)
    parser.add_argument("--work", type=Path, default=Path("bench-learning"), help="run folder (reused on rerun)")
    parser.add_argument("--cvc-epochs", type=int, default=20, help="epochs of the CVC runs (the issue's run: 20)")
    parser.add_argument("--collapse-epochs", type=int, default=5)
    parser.add_argument("--downstream-minutes", type=float, default=0.0, help="0 skips the LoRA check")
    parser.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE] for one more CVC run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="seconds per run: every path, meaningless numbers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.cache = {}
    return args


def main() -> None:
    args = parse()
    rows, runs = [], {}
    run_dir, minutes = pretrain(args, "oct-demo", "oct", [])
    runs["oct-demo"] = run_dir
    rows.append(row("oct-demo", run_dir, minutes, oct_held_out(args, run_dir), {}))
    if not (args.cvc / "index.csv").is_file():
        Console().print(f"[yellow]No CVC-ClinicDB at {args.cvc}: only the OCT demo is measured.[/]")
    else:
        manifest = train_split_manifest(args.cvc, args.work)
        data = data_overrides(args.cvc, None, manifest)
        cases = {"cvc": [f"train.epochs={args.cvc_epochs}"],
                 "cvc-collapsed": [f"train.epochs={args.collapse_epochs}", *sets(COLLAPSE)]}
        for variant in args.variant:
            cases[f"cvc+{variant}"] = [f"train.epochs={args.cvc_epochs}", *variant.split(",")]
        for name, extra in cases.items():
            run_dir, minutes = pretrain(args, name, "endoscopy", [*data, *extra])
            runs[name] = run_dir
            extra = downstream(args, run_dir, name) if args.downstream_minutes and "collapsed" not in name else {}
            rows.append(row(name, run_dir, minutes, cvc_held_out(args, run_dir), extra))
    columns = list(rows[0])
    table = Table(title="Is it learning? The run's verdict against held-out checks")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r[c]) for c in columns])
    Console(width=220).print(table)
    figure(runs)
    lines = ["# Is it learning? Verdicts against held-out checks", "",
             f"Command: `python benchmarks/bench_learning.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M')}; figure: `docs/images/is_it_learning.png`.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
