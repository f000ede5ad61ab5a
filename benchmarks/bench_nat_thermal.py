"""NAT vs ViT for thermal DINO (the DINONAT question) at an equal CPU budget: HIT-UAV object crops.

Per backbone (``--archs``, default ``nat_mini`` and ``vit_tiny_patch16_224``) and seed, a ``--quick`` DINO run of
the thermal recipe on HIT-UAV's object crops (its published train split; pretraining never reads val/test) for
about ``--minutes`` of training: each backbone's step time is measured first (a few steps on the same data), and
its epochs are chosen so the schedules end with the budget (NAT's step costs several ViT steps, so it gets fewer).
Each backbone is then scored by weighted kNN (k=20) and the linear probe, balanced accuracy on the test split,
against the same architecture at random init. Mean ± std over ``--seeds``.

Usage::

    python benchmarks/bench_nat_thermal.py --smoke
    python benchmarks/bench_nat_thermal.py --minutes 6 --seeds 0 1 2 --work /tmp/nat-thermal
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import dinomed
from dinomed.engine import read_metrics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_continue import DATA, QUIET, _data, epochs_for, probe  # noqa: E402

RESULTS = HERE / "results" / "nat_thermal.md"
TARGET = "hit-uav"


def seconds_per_step(args: argparse.Namespace, arch: str) -> float:
    """Median wall time of a training step of ``arch`` on the thermal crops (a short run; first steps dropped)."""
    name = f"calibrate-{arch}"
    if not (args.work / name / "metrics.jsonl").is_file():
        dinomed.pretrain("thermal", quick=True, console=QUIET, overrides={
            **_data(TARGET, args.data), **args.common, "train.max_steps": args.calibration_steps,
            "train.log_every": 1, "train.probe_every": 0, "train.output_dir": str(args.work), "train.run_name": name})
    times = [r["time"] for r in read_metrics(args.work / name / "metrics.jsonl") if "loss" in r]
    return statistics.median(b - a for a, b in zip(times[2:], times[3:]))


def dino_run(args: argparse.Namespace, arch: str, seed: int, epochs: int) -> tuple[Path, float]:
    """The seed's DINO run (reused when already exported) and its minutes."""
    name = f"{arch}-{seed}"
    run_dir = args.work / name
    if (run_dir / "export" / "backbone.safetensors").is_file():
        return run_dir, float("nan")
    start = time.perf_counter()
    dinomed.pretrain("thermal", quick=True, console=Console(), overrides={
        **_data(TARGET, args.data), **args.common, "train.epochs": epochs, "train.seed": seed,
        "train.output_dir": str(args.work), "train.run_name": name})
    return run_dir, (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (SOURCES.md)")
    parser.add_argument("--work", type=Path, help="run directories (reused when rerun); default a temporary folder")
    parser.add_argument("--archs", nargs="+", default=["nat_mini", "vit_tiny_patch16_224"])
    parser.add_argument("--minutes", type=float, default=6.0, help="DINO training minutes per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--calibration-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="seconds-sized runs of every path")
    args = parser.parse_args()
    args.common = {"data.num_workers": 1, "train.num_threads": args.threads}
    if args.smoke:
        args.minutes, args.seeds, args.calibration_steps = 0.1, [0], 5
        args.common.update({"augment.global_size": 32, "augment.local_size": 16, "train.batch_size": 8,
                            "train.probe_every": 2, "train.probe_images": 32})
    if not (args.data / "thermal" / "hit-uav" / "annotations.json").is_file():
        raise SystemExit(f"{args.data}/thermal/hit-uav/annotations.json not found: pass --data (see SOURCES.md)")
    args.work = args.work or Path(tempfile.mkdtemp(prefix="dinomed-nat-thermal-"))
    args.work.mkdir(parents=True, exist_ok=True)
    start, rows, common = time.perf_counter(), [], args.common
    for arch in args.archs:
        args.common = {**common, "model.arch": arch}  # also the architecture of the random-init probes
        step = seconds_per_step(args, arch)
        epochs = epochs_for("thermal", {**_data(TARGET, args.data), **args.common}, int(args.minutes * 60 / step))
        Console().print(f"{arch}: {step:.2f} s/step -> {epochs} epochs for about {args.minutes:g} min")
        for seed in args.seeds:
            run_dir, minutes = dino_run(args, arch, seed, epochs)
            summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
            trained, random = probe(args, TARGET, str(run_dir), seed), probe(args, TARGET, "random", seed)
            rows.append({"arch": arch, "seed": seed, "steps": summary["step"], "minutes": minutes,
                         "s_per_step": step, "verdict": summary["verdict"], **trained,
                         "knn_random": random["knn"], "linear_random": random["linear"]})
            Console().print(f"{arch} seed {seed}: knn {trained['knn']:.3f} (random {random['knn']:.3f}), "
                            f"linear {trained['linear']:.3f} (random {random['linear']:.3f})")
    write(args, rows, (time.perf_counter() - start) / 60)


def write(args: argparse.Namespace, rows: list[dict[str, Any]], minutes: float) -> None:
    """The table (mean ± std over seeds, random-init reference per architecture) to ``--out`` and the console."""
    lines = ["# NAT vs ViT, thermal DINO at an equal CPU budget (HIT-UAV object crops)", "",
             f"Command: `python benchmarks/bench_nat_thermal.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M')}; {minutes:.0f} min in all; about {args.minutes:g} min of DINO "
             f"per run (thermal recipe, --quick), test split balanced accuracy, seeds {args.seeds}.", "",
             "| backbone | init | s / step | steps | kNN balanced acc. | linear balanced acc. | verdicts |",
             "|---|---|---:|---:|---|---|---|"]

    def cell(runs: list[dict[str, Any]], key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"

    for arch in dict.fromkeys(r["arch"] for r in rows):
        runs = [r for r in rows if r["arch"] == arch]
        randoms = [{"knn": r["knn_random"], "linear": r["linear_random"]} for r in runs]
        lines.append(f"| {arch} | random | - | 0 | {cell(randoms, 'knn')} | {cell(randoms, 'linear')} | - |")
        verdicts = ", ".join(f"{v} x{sum(r['verdict'] == v for r in runs)}" for v in dict.fromkeys(r["verdict"] for r in runs))
        lines.append(f"| {arch} | DINO | {runs[0]['s_per_step']:.2f} | {statistics.mean(r['steps'] for r in runs):.0f} | "
                     f"{cell(runs, 'knn')} | {cell(runs, 'linear')} | {verdicts} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    Console().print("\n".join(lines))


if __name__ == "__main__":
    main()
