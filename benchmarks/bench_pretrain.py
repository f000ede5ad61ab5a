"""Pretraining benchmark: does DINO learn on the demo budget, and how fast is our step?

Four measurements, each printed as a table; 1. is written to ``benchmarks/results/pretrain_learning.md``, 2.-4. to
``benchmarks/results/pretrain.md``:

1. **Learning**: the README demo run (``oct`` recipe, ``--quick``, OCT phantom) and then kNN top-1 (k=20, T=0.07,
   cosine, teacher CLS) on held-out phantom patients, pretrained backbone vs the same architecture at random init.
2. **Step throughput** of the demo config: images/s of the optimisation step alone (synthetic crops, no loader)
   and the fraction of this machine's fp32 matmul peak it reaches (FLOPs counted by torch's FlopCounterMode).
3. **Peer comparison** on LightlyTrain's CPU config (ViT-Ti/16, batch 16, 2x224 + 6x96, out 65536): our step vs
   a loop of lightly 1.6's DINOProjectionHead + DINOLoss + momentum update on the same timm backbone, timed side
   by side in this process (skipped with a note when lightly is not installed:
   ``pip install -c constraints.txt -r benchmarks/requirements-peers.txt``).
4. **End-to-end peer comparison**: whole pretraining runs of dinomed and LightlyTrain 0.18 (``lightly_train``,
   method ``dino``) on the same endoscopy-phantom PNG folder and the same config as 3., with the same loader
   workers and torch threads. Seconds per step come from differencing a short and a long run of each, so start-up,
   image listing and the final export cancel out; loading, augmentation, logging and the framework's loop remain.
   LightlyTrain is skipped with a note when ``lightly_train`` is not installed or with ``--skip-lightlytrain``.

Usage: ``python benchmarks/bench_pretrain.py [--skip-learning] [--steps 8] [--e2e-steps 3 9] [--skip-lightlytrain]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from dinomed.api import knn_eval, pretrain
from dinomed.data.phantoms import PhantomDataset, write_phantom_dataset
from dinomed.models.backbones import create_backbone, load_backbone
from dinomed.recipe import Recipe, load_recipe
from dinomed.ssl.trainer import DINOTrainer

RESULTS = Path(__file__).resolve().parent / "results" / "pretrain.md"  # throughput tables
LEARNING_RESULTS = RESULTS.with_name("pretrain_learning.md")  # kNN table: separate, so each part can be rerun alone
PEER_CONFIG = [
    "model.arch=vit_tiny_patch16_224", "model.out_dim=65536", "model.hidden_dim=2048", "model.drop_path_rate=0.0",
    "augment.global_size=224", "augment.local_crops=6", "augment.local_size=96", "train.batch_size=16",
    "data.phantom.count=64", "data.phantom.size=[224,224]", "data.num_workers=0", "train.device=cpu",
]
E2E_EPOCHS = 100  # end-to-end runs: more epochs than any --e2e-steps needs; the step limit ends each run
console = Console()


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul rate of this machine in GFLOP/s (the ceiling a ViT step can approach)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def synthetic_crops(recipe: Recipe) -> list[torch.Tensor]:
    aug, b, c = recipe.augment, recipe.train.batch_size, recipe.data.channels
    crops = [torch.randn(b, c, aug.global_size, aug.global_size) for _ in range(aug.global_crops)]
    return crops + [torch.randn(b, c, aug.local_size, aug.local_size) for _ in range(aug.local_crops)]


def time_steps(step: Callable[[], object], steps: int, warmup: int = 2) -> float:
    """Seconds per call, after warm-up."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def our_step(recipe: Recipe, tmp: Path) -> tuple[Callable[[], object], DINOTrainer]:
    trainer = DINOTrainer(recipe, tmp, console=Console(quiet=True))
    crops = synthetic_crops(recipe)
    trainer.student.train()
    return (lambda: trainer.train_step(crops)), trainer


def lightly_step(recipe: Recipe) -> Callable[[], object] | None:
    """A loop of lightly 1.6's head + loss + momentum update, on the same timm backbone and crops."""
    try:
        from lightly.loss import DINOLoss as LightlyDINOLoss
        from lightly.models.modules import DINOProjectionHead as LightlyHead
        from lightly.models.utils import deactivate_requires_grad, update_momentum
    except ImportError:
        return None
    def network() -> torch.nn.Module:
        backbone, _ = create_backbone(recipe.model.arch, in_chans=recipe.data.channels, img_size=recipe.augment.global_size)
        m = recipe.model
        return torch.nn.Sequential(backbone, LightlyHead(backbone.num_features, m.hidden_dim, m.bottleneck_dim, m.out_dim))

    student, teacher = network(), network()  # lightly's old-style weight_norm head cannot be deep-copied
    teacher.load_state_dict(student.state_dict())
    deactivate_requires_grad(teacher)
    criterion = LightlyDINOLoss(output_dim=recipe.model.out_dim, warmup_teacher_temp_epochs=0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    crops = synthetic_crops(recipe)
    n_global = recipe.augment.global_crops

    def step() -> None:
        update_momentum(student, teacher, m=0.996)
        with torch.no_grad():
            teacher_out = [teacher(view) for view in crops[:n_global]]
        student_out = [student(view) for view in crops]
        loss = criterion(teacher_out, student_out, epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def step_flops(step: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def learning(console: Console) -> Table:
    """Demo pretrain, then kNN of its teacher vs random init on held-out phantom patients."""
    start = time.perf_counter()
    run = pretrain("oct", overrides=["train.output_dir=runs/bench", "train.run_name=null"], quick=True, console=console)
    minutes = (time.perf_counter() - start) / 60
    recipe = load_recipe(run.run_dir / "config.yaml")
    trained = load_backbone(run.run_dir)
    random_init, _ = create_backbone(recipe.model.arch, in_chans=recipe.data.channels, img_size=recipe.augment.global_size)
    table = Table(title=f"kNN on held-out OCT phantom patients (k=20, T=0.07), demo run {minutes:.1f} min")
    for column in ("backbone", "top-1", "balanced acc."):
        table.add_column(column)
    # whole patients of another generator seed, never seen in the run: 512 memory-bank and 256 test B-scans
    held_out = PhantomDataset("oct", 768, tuple(recipe.data.phantom.size), seed=101)
    splits = {"train": list(range(512)), "test": list(range(512, 768))}
    for name, model in (("dinomed pretrained (demo)", trained), ("random init", random_init)):
        test = knn_eval(recipe, backbone=model, dataset=held_out, splits=splits).metrics["test"]
        table.add_row(name, f"{test['top1']:.3f}", f"{test['balanced_accuracy']:.3f}")
    return table


def throughput(recipe: Recipe, label: str, tmp: Path, steps: int, peak: float, peers: bool) -> list[list[str]]:
    images = recipe.train.batch_size
    ours, trainer = our_step(recipe, tmp)
    flops = step_flops(ours)
    rows = []
    sec = time_steps(ours, steps)
    rows.append([label, "dinomed", f"{images / sec:.2f}", f"{flops / sec / 1e9:.1f}", f"{flops / sec / 1e9 / peak:.0%}", "1.00x"])
    if peers:
        theirs = lightly_step(recipe)
        if theirs is None:
            rows.append([label, "lightly 1.6 (not installed)", "-", "-", "-", "-"])
        else:
            sec_l = time_steps(theirs, steps)
            rows.append([label, "lightly 1.6 head+loss loop", f"{images / sec_l:.2f}", f"{flops / sec_l / 1e9:.1f}",
                         f"{flops / sec_l / 1e9 / peak:.0%}", f"{sec_l / sec:.2f}x slower" if sec_l > sec else f"{sec / sec_l:.2f}x faster"])
    del trainer
    return rows


def write_peer_images(recipe: Recipe, folder: Path) -> Path:
    """The peer config's phantom as RGB PNGs on disk, so both trainers read and decode the same files.

    Returns the ``images/`` sub-folder only: both list image files recursively and would otherwise also train on
    the mask and depth PNGs written beside it.
    """
    phantom = recipe.data.phantom
    write_phantom_dataset(recipe.modality, folder, count=phantom.count, size=tuple(phantom.size))
    return folder / "images"


def differenced(run: Callable[[int], object], steps: tuple[int, int]) -> float:
    """Seconds per step from a short and a long run: what every run pays once (start-up, export) cancels out."""
    elapsed = []
    for n in steps:
        start = time.perf_counter()
        run(n)
        elapsed.append(time.perf_counter() - start)
    return (elapsed[1] - elapsed[0]) / (steps[1] - steps[0])


def dinomed_seconds_per_step(folder: Path, steps: tuple[int, int]) -> float:
    """Whole :func:`pretrain` runs on the PNG folder with the peer config, last layer trained from step 0."""
    def run(n: int) -> None:
        with tempfile.TemporaryDirectory() as out:
            pretrain("endoscopy", overrides=[
                *PEER_CONFIG, "data.source=folder", f"data.root={folder}",
                f"train.num_threads={torch.get_num_threads()}", f"train.epochs={E2E_EPOCHS}", f"train.max_steps={n}",
                f"train.checkpoint_every={n + 1}", "dino.freeze_last_layer=0", f"train.output_dir={out}",
            ], quick=True, console=Console(quiet=True))

    return differenced(run, steps)


def lightlytrain_seconds_per_step(folder: Path, steps: tuple[int, int], recipe: Recipe) -> float | None:
    """Whole ``lightly_train.pretrain(method="dino")`` runs with ``recipe``'s config; None when not installed.

    Arguments that differ from LightlyTrain's defaults, each to match dinomed: AdamW (its DINO default is SGD),
    the head sizes (its "auto" output dim is 1024 below 20k images), the last layer trained from step 0, the views
    (its DINO always makes 2 global ones, as ``recipe``), workers and batch. No loggers, checkpoints or per-epoch
    exports: they are not training. Runs in this process, so torch uses the same threads as dinomed.
    """
    try:
        import lightly_train
    except ImportError:
        return None
    os.environ.setdefault("LIGHTLY_TRAIN_EVENTS_DISABLED", "1")  # no usage-event thread during a benchmark
    os.environ.setdefault("LIGHTLY_TRAIN_LOG_LEVEL", "WARNING")
    m, aug = recipe.model, recipe.augment

    def run(n: int) -> None:
        with tempfile.TemporaryDirectory() as out:
            lightly_train.pretrain(
                out=out, data=folder, model=f"timm/{m.arch}", model_args={"pretrained": False}, method="dino",
                method_args={"output_dim": m.out_dim, "hidden_dim": m.hidden_dim, "bottleneck_dim": m.bottleneck_dim,
                             "student_freeze_last_layer_steps": 0},
                transform_args={
                    "image_size": (aug.global_size, aug.global_size),
                    "local_view": {"num_views": aug.local_crops, "view_size": (aug.local_size, aug.local_size)},
                },
                optim="adamw", epochs=E2E_EPOCHS, batch_size=recipe.train.batch_size,
                num_workers=recipe.data.num_workers, accelerator="cpu", devices=1, precision="32-true",
                loggers={"jsonl": None, "tensorboard": None},
                callbacks={"learning_rate_monitor": None, "model_export": None, "model_checkpoint": None},
                trainer_args={"max_steps": n, "enable_checkpointing": False},
            )

    return differenced(run, steps)


def rate_cells(images: int, sec: float, ours: float) -> list[str]:
    """s/step, img/s and the ratio to dinomed's ``ours``; '-' where differencing failed (long run not slower)."""
    rate = f"{images / sec:.2f}" if sec > 0 else "- (too noisy: raise --e2e-steps)"
    if sec <= 0 or ours <= 0:
        ratio = "-"
    elif sec == ours:
        ratio = "1.00x"
    else:
        ratio = f"{sec / ours:.2f}x slower" if sec > ours else f"{ours / sec:.2f}x faster"
    return [f"{sec:.2f}", rate, ratio]


def end_to_end(recipe: Recipe, steps: tuple[int, int], peers: bool) -> Table:
    """dinomed vs LightlyTrain 0.18, whole runs on the same PNG folder and config, side by side in this process."""
    images, aug = recipe.train.batch_size, recipe.augment
    table = Table(title="End-to-end pretraining throughput, same images, same config",
                  caption=f"{recipe.model.arch} 2x{aug.global_size}+{aug.local_crops}x{aug.local_size}, "
                          f"K={recipe.model.out_dim}, b{images}, {recipe.data.phantom.count} {recipe.modality} phantom "
                          f"PNGs; {recipe.data.num_workers} loader workers, {torch.get_num_threads()} torch threads; "
                          f"runs of {steps[1]} minus {steps[0]} steps")
    for column in ("implementation", "s/step", "img/s", "vs dinomed"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_peer_images(recipe, Path(tmp))
        sec = dinomed_seconds_per_step(folder, steps)
        sec_l = lightlytrain_seconds_per_step(folder, steps, recipe) if peers else None
    table.add_row("dinomed", *rate_cells(images, sec, sec))
    if sec_l is not None:
        table.add_row("LightlyTrain 0.18", *rate_cells(images, sec_l, sec))
    else:
        table.add_row(f"LightlyTrain 0.18 ({'not installed' if peers else 'skipped'})", "-", "-", "-")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--skip-learning", action="store_true", help="only the throughput tables")
    parser.add_argument("--e2e-steps", type=int, nargs=2, default=(3, 9), metavar=("S1", "S2"),
                        help="lengths of the short and long end-to-end runs whose difference is timed")
    parser.add_argument("--skip-lightlytrain", action="store_true", help="end-to-end table without LightlyTrain")
    args = parser.parse_args()
    if not 0 < args.e2e_steps[0] < args.e2e_steps[1]:
        parser.error("--e2e-steps needs 0 < S1 < S2")
    torch.manual_seed(0)
    tmp = Path("runs/bench-throughput")
    tmp.mkdir(parents=True, exist_ok=True)
    peak = matmul_peak()
    table = Table(title=f"DINO step throughput (fp32 matmul peak measured: {peak:.0f} GFLOP/s)")
    for column in ("config", "implementation", "img/s", "GFLOP/s", "% of peak", "vs dinomed"):
        table.add_column(column)
    demo = load_recipe("oct", overrides=["data.num_workers=0", "train.device=cpu"], quick=True)  # the peers run on the CPU
    for row in throughput(demo, "demo: ViT-Ti 2x112+4x48, K=1024, b16", tmp, args.steps, peak, peers=True):
        table.add_row(*row)
    peer = load_recipe("endoscopy", overrides=PEER_CONFIG, quick=True)
    for row in throughput(peer, "LightlyTrain CPU: ViT-Ti 2x224+6x96, K=65536, b16", tmp, args.steps, peak, peers=True):
        table.add_row(*row)
    e2e = end_to_end(peer, tuple(args.e2e_steps), peers=not args.skip_lightlytrain)
    write_tables(RESULTS, [table, e2e])
    if not args.skip_learning:
        write_tables(LEARNING_RESULTS, [learning(console)])


def write_tables(path: Path, tables: list[Table]) -> None:
    """Print the tables and write them, with the date, to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = Console(record=True, width=140)
    for t in tables:
        console.print(t)
        record.print(t)
    path.write_text(f"# bench_pretrain ({time.strftime('%Y-%m-%d %H:%M')})\n\n```\n{record.export_text()}```\n", encoding="utf-8")
    console.print(f"written {path}")


if __name__ == "__main__":
    main()
