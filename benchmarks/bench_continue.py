"""Domain adaptation from existing weights: does continued DINO pretraining beat DINO from scratch on the target?

In the spirit of DINONAT (a DINO model trained on colour images, carried over to thermal imagery): a *source*
backbone is DINO-pretrained on RGB images that are not the target (the natural-shapes phantom: textured shapes on
cluttered backgrounds, rendered in colour), then adapted to two targets, HIT-UAV thermal object crops (its
published train/val/test split) and the OCT set (grouped by patient), at equal target-training budgets:

* ``(0) random init``          no training at all (the floor)
* ``(a) scratch``              random init + DINO on the target, ``--target-steps`` steps
* ``(b) source``               the source backbone, no target training
* ``(c) source + continued``   ``--init SOURCE`` + DINO on the target, the same ``--target-steps`` steps

scored by kNN and linear-probe balanced accuracy on the target's test split, over ``--seeds`` (the DINO seed; the
split is fixed), mean ± std. The continued runs' forgetting monitor (linear CKA of the teacher's CLS embeddings to
the source's) is drawn to ``docs/images/forgetting.png``.

Then the pipeline a clinical user would run on CVC-ClinicDB (grouped by sequence, 10 % labels): source ->
continued DINO on the unlabelled train frames -> LoRA segmentation, against a MONAI UNet and LoRA on the source
alone, each with the same total CPU minutes (``--cvc-minutes``: DINO + LoRA for the pipeline).

Usage::

    python benchmarks/bench_continue.py --smoke            # seconds per run, every path
    python benchmarks/bench_continue.py --source-steps 1200 --target-steps 150 --seeds 0 1 2 --cvc-seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from rich.console import Console

import dinomed
from dinomed.engine import read_metrics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_label_scarce import data_overrides, in_subprocess, summarise, train_split_manifest  # noqa: E402

DATA = HERE.parents[1] / "shared" / "data"
RESULTS = HERE / "results" / "continue.md"
FIGURE = HERE.parent / "docs" / "images" / "forgetting.png"
QUIET = Console(quiet=True)
TARGETS = {
    "hit-uav": ("thermal", {"data.source": "coco", "data.annotations": "{data}/thermal/hit-uav/annotations.json"}),
    "oct": ("oct", {"data.source": "manifest", "data.manifest": "{data}/oct/index.csv",
                    "data.columns": {"group": "patient_id"}}),
}
ARMS = ("(0) random init", "(a) scratch", "(b) source", "(c) source + continued")


def _data(target: str, data: Path) -> dict[str, Any]:
    recipe, sets = TARGETS[target]
    return {k: v.replace("{data}", str(data)) if isinstance(v, str) else v for k, v in sets.items()}


def source_run(args: Namespace, work: Path) -> Path:
    """The RGB source: DINO on the natural-shapes phantom (reused when the work folder already holds it)."""
    run_dir = work / "source"
    if (run_dir / "export" / "backbone.safetensors").is_file():
        return run_dir
    data = {"modality": "natural", "data.phantom.count": 2048, "data.phantom.size": [128, 128], **args.common}
    dinomed.pretrain("endoscopy", quick=True, console=Console(), overrides={
        **data, "train.epochs": epochs_for("endoscopy", data, args.source_steps), "train.output_dir": str(work),
        "train.run_name": "source"})
    return run_dir


def epochs_for(recipe: str, overrides: dict[str, Any], steps: int) -> int:
    """Whole epochs closest to ``steps`` on the images pretraining reads, so the schedules end with the budget."""
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import pretraining_subset

    config = dinomed.load_recipe(recipe, quick=True, overrides=overrides)
    images = len(pretraining_subset(build_dataset(config.data, config.modality), config.data)[0])
    return max(2, round(steps / (images // config.train.batch_size)))


def target_run(args: Namespace, work: Path, target: str, seed: int, init: Path | None) -> Path:
    """DINO on the target for the same number of epochs from random init (``init`` None) or from the source; the
    continued run keeps the continued-run defaults (one epoch of frozen backbone, layer decay, no temperature
    warm-up)."""
    name = f"{target}-{'continued' if init else 'scratch'}-{seed}"
    if (work / name / "export" / "backbone.safetensors").is_file():
        return work / name
    recipe, _ = TARGETS[target]
    data = {**_data(target, args.data), **args.common}
    dinomed.pretrain(recipe, quick=True, init=init, console=QUIET, overrides={
        **data, "train.epochs": epochs_for(recipe, data, args.target_steps), "train.seed": seed,
        "train.output_dir": str(work), "train.run_name": name})
    return work / name


def probe(args: Namespace, target: str, backbone: Any, seed: int) -> dict[str, float]:
    recipe, _ = TARGETS[target]
    out = {}
    for method in ("knn", "linear"):
        result = dinomed.evaluate(recipe, backbone=backbone, method=method, quick=True, console=QUIET, overrides={
            **_data(target, args.data), "train.seed": seed, "eval.cache_dir": str(args.work / "features"),
            **args.common})
        out[method] = result.metrics["test"]["balanced_accuracy"]
    return out


def targets(args: Namespace, source: Path) -> tuple[list[dict[str, Any]], dict[str, list[list[dict[str, Any]]]]]:
    rows, curves = [], {}
    for target in args.targets:
        for seed in args.seeds:
            scratch = target_run(args, args.work, target, seed, None)
            continued = target_run(args, args.work, target, seed, source)
            curves.setdefault(target, []).append([r for r in read_metrics(continued / "metrics.jsonl") if "cka_init" in r])
            for arm, backbone in zip(ARMS, ("random", scratch, source, continued)):
                rows.append({"target": target, "arm": arm, "seed": seed, **probe(args, target, str(backbone), seed)})
            Console().print(f"{target} seed {seed}: " + ", ".join(
                f"{r['arm']} knn {r['knn']:.3f} linear {r['linear']:.3f}" for r in rows[-4:]))
    return rows, curves


def cvc_pipeline(args: Namespace, source: Path) -> list[dict[str, Any]]:
    """Source -> continued DINO on CVC's unlabelled train frames -> LoRA seg at 10 % labels, vs UNet and LoRA on the
    source alone with the same total minutes."""
    cvc = args.data / "endoscopy" / "cvc-clinicdb"
    manifest = train_split_manifest(cvc, args.work)  # the train split's frames only: val/test sequences never seen
    total, dino_minutes = args.cvc_minutes, args.cvc_dino_minutes
    results = []
    for seed in args.cvc_seeds:
        name = f"cvc-continued-{seed}"
        if not (args.work / name / "export" / "backbone.safetensors").is_file():
            start = time.perf_counter()
            data = {"data.source": "manifest", "data.manifest": str(manifest), "data.root": str(cvc),
                    "data.columns": {"group": "sequence"}, **args.common}
            steps = max(1, int(dino_minutes * 60 / args.seconds_per_step))
            dinomed.pretrain("endoscopy", quick=True, init=source, console=QUIET, overrides={
                **data, "train.epochs": epochs_for("endoscopy", data, steps), "train.seed": seed,
                "train.output_dir": str(args.work), "train.run_name": name})
            spent = (time.perf_counter() - start) / 60
        else:
            spent = dino_minutes
        vit = [f"finetune.image_size={args.size}", "finetune.batch_size=8", "finetune.epochs=100000",
               "finetune.patience=100000", f"finetune.seed={seed}", "finetune.lr=0.001", "finetune.val_every=5",
               f"model.arch={args.arch}", f"train.num_threads={args.threads}"]
        base = {"task": "seg", "budget": 0.1, "seed": seed, "threads": args.threads}
        jobs = [
            {**base, "method": "lora-continued", "label": "pipeline: source + continued DINO + LoRA",
             "backbone": str(args.work / name),
             "overrides": [*data_overrides(cvc, 0.1), *vit, f"finetune.max_minutes={max(total - spent, 0.5)}"],
             "out": str(args.work / f"cvc-lora-continued-{seed}"), "dino_minutes": spent},
            {**base, "method": "lora-source", "label": "LoRA on the source", "backbone": str(source),
             "overrides": [*data_overrides(cvc, 0.1), *vit, f"finetune.max_minutes={total}"],
             "out": str(args.work / f"cvc-lora-source-{seed}")},
            {**base, "method": "lora-random", "label": "LoRA on random init", "backbone": "random",
             "overrides": [*data_overrides(cvc, 0.1), *vit, f"finetune.max_minutes={total}"],
             "out": str(args.work / f"cvc-lora-random-{seed}")},
            {**base, "method": "unet", "label": "MONAI UNet from scratch", "overrides": data_overrides(cvc, 0.1), "size": (144, 192), "lr": 0.001,
             "minutes": total, "batch_size": 8, "val_every": 5, "out": str(args.work / f"cvc-unet-{seed}")},
        ]
        for job in jobs:
            results.append(in_subprocess(job))
            Console().print(f"CVC seed {seed} {job['label']}: dice {results[-1]['dice']:.3f}")
    return results


def forgetting_figure(curves: dict[str, list[list[dict[str, Any]]]]) -> None:
    from matplotlib.figure import Figure

    from dinomed.report.plots import to_png

    figure = Figure(figsize=(5 * len(curves), 3.4))
    for index, (target, runs) in enumerate(curves.items()):
        ax = figure.add_subplot(1, len(curves), index + 1)
        for seed, records in enumerate(runs):
            ax.plot([r["step"] for r in records], [r["cka_init"] for r in records], marker="o", markersize=3,
                    label=f"CKA, seed {seed}")
            ax.plot([r["step"] for r in records], [r["cos_init"] for r in records], linestyle="--", alpha=0.6,
                    label=f"mean cosine, seed {seed}")
        ax.set_title(f"{target}: teacher vs source features", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    FIGURE.write_bytes(to_png(figure))


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | arm | seeds | kNN balanced acc. | linear balanced acc. |", "|---|---|---|---|---|"]
    for target in dict.fromkeys(r["target"] for r in rows):
        for arm in ARMS:
            runs = [r for r in rows if r["target"] == target and r["arm"] == arm]
            cell = lambda k: f"{statistics.mean(r[k] for r in runs):.3f} ± {statistics.pstdev(r[k] for r in runs):.3f}"  # noqa: E731
            lines.append(f"| {target} | {arm} | {len(runs)} | {cell('knn')} | {cell('linear')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (SOURCES.md)")
    parser.add_argument("--work", type=Path, help="run directories (reused when rerun); default a temporary folder")
    parser.add_argument("--source-steps", type=int, default=1200)
    parser.add_argument("--target-steps", type=int, default=240, help="about this many steps, in whole epochs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--cvc-seeds", nargs="*", type=int, default=[0, 1], help="none: skip the CVC pipeline")
    parser.add_argument("--cvc-minutes", type=float, default=8.0, help="total CPU minutes per CVC method")
    parser.add_argument("--cvc-dino-minutes", type=float, default=4.0, help="of which continued DINO (pipeline)")
    parser.add_argument("--seconds-per-step", type=float, default=1.0, help="DINO step time used to size --cvc-dino")
    parser.add_argument("--arch", default="vit_tiny_patch16_224")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="seconds-sized runs of every path")
    args = parser.parse_args()
    args.common = {"data.num_workers": 1, "train.num_threads": args.threads}
    if args.smoke:
        args.source_steps, args.target_steps, args.seeds, args.cvc_seeds = 4, 4, [0], [0]
        args.cvc_minutes, args.cvc_dino_minutes, args.size = 0.2, 0.05, 32
        args.common.update({"augment.global_size": 32, "augment.local_size": 16, "train.probe_every": 2,
                            "train.probe_images": 32, "train.batch_size": 8, "data.phantom.count": 64})
    args.work = args.work or Path(tempfile.mkdtemp(prefix="dinomed-continue-"))
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    source = source_run(args, args.work)
    rows, curves = targets(args, source)
    forgetting_figure(curves)
    cvc = cvc_pipeline(args, source) if args.cvc_seeds else []
    lines = ["# Continued pretraining from a source backbone", "",
             f"Command: `python benchmarks/bench_continue.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M')}; {(time.perf_counter() - start) / 60:.0f} min in all. Source: "
             f"DINO on the natural-shapes phantom (RGB), {args.source_steps} steps; target runs {args.target_steps} "
             "steps each (quick profile, ViT-Ti/16 at 112 px); test split balanced accuracy, mean ± std over seeds "
             f"{args.seeds}.", "", *table(rows), ""]
    if cvc:
        summary = summarise(cvc, ("dice", "iou"))
        labels = {job["method"]: job["label"] for job in cvc}
        for row in summary:
            row["method"] = labels[row["method"]]
        lines += [f"CVC-ClinicDB, 10 % labels, {args.cvc_minutes:g} CPU minutes per method (the pipeline: "
                  f"{args.cvc_dino_minutes:g} of continued DINO, the rest LoRA); test Dice, mean ± std over seeds "
                  f"{args.cvc_seeds}.", "", "| method | seeds | dice | iou | minutes | steps |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['seeds']} | {r.get('dice')} | {r.get('iou')} | {r['minutes']} | {r['steps']} |"
                  for r in summary]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"targets": rows, "cvc": cvc}, indent=1, default=str))
    Console().print("\n".join(lines))


if __name__ == "__main__":
    main()
