"""Label-scarce segmentation on CVC-ClinicDB: does DINO pretraining + LoRA beat training from scratch?

Compares, on the same held-out sequences (grouped split by ``sequence``, ``data.split_seed`` 0), the same labelled
subsets (5 / 10 / 25 / 100 % of the train split) and the same seeds, at an equal wall-clock budget per run:

* ``lora-pretrained``   LoRA + head on a dinomed-pretrained ViT (``--pretrained RUN_DIR`` or ``--pretrain-epochs N``)
* ``lora-random``       LoRA + head on a randomly initialised ViT
* ``full-random``       the same ViT + head, every weight trained from scratch
* ``frozen-pretrained`` frozen pretrained ViT, head only
* ``unet``              MONAI UNet from scratch at 144x192, the issue's baseline (Dice ~0.48 with 10 % labels and
                        ~0.62 with all, in 6 CPU-minutes)

Each ViT method runs once per ``--decoders`` entry: ``fusion`` (the blocks' maps concatenated, one upsample), ``dpt``
(DPT's reassemble-and-fuse pyramid) or ``dpt+detail`` (DPT plus the detail branch on the pixels); the method is then
named e.g. ``lora-random/dpt+detail``.

Every run is a fresh subprocess, so its peak resident memory (VmHWM) is its own, and writes ``bench_result.json``
in its folder: rerunning with the same ``--work`` skips finished runs. All runs use the paired training
augmentation of the endoscopy preset. With ``--overlay``, every seg run of the first seed at the smallest budget
predicts one fixed test frame, drawn side by side in ``docs/images/label_scarce_overlay.png``. ``--pretrain-epochs`` pretrains on the *train split's* frames only
(never the val/test sequences). ``--tasks seg depth`` adds the depth variant on the endoscopy phantom (known metric
depth): AbsRel and delta < 1.25 per method (ViT methods only). Results: a rich table and
``benchmarks/results/label_scarce.md`` (``--out``).

Usage::

    python benchmarks/bench_label_scarce.py --smoke                       # seconds-sized check of every path
    python benchmarks/bench_label_scarce.py --pretrained runs/cvc-dino --minutes 6 --seeds 0 1 2
    python benchmarks/bench_label_scarce.py --pretrain-epochs 20 --budgets 0.1 --methods lora-random unet --seeds 0
    python benchmarks/bench_label_scarce.py --pretrained RUN --methods lora-pretrained lora-random unet \
        --decoders fusion dpt dpt+detail --budgets 0.1 1 --tasks seg depth --overlay
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CVC = Path(__file__).resolve().parents[2] / "shared" / "data" / "endoscopy" / "cvc-clinicdb"
RESULTS = Path(__file__).resolve().parent / "results" / "label_scarce.md"
METHODS = ("lora-pretrained", "lora-random", "full-random", "frozen-pretrained", "unet")
DECODERS = {"fusion": [], "dpt": ["finetune.decoder=dpt"], "dpt+detail": ["finetune.decoder=dpt", "finetune.detail=true"]}
OVERLAY = Path(__file__).resolve().parents[1] / "docs" / "images" / "label_scarce_overlay.png"
RESULT_FILE = "bench_result.json"
PRETRAINED = ("lora-pretrained", "frozen-pretrained")
UNET_SIZE = (144, 192)


# ----------------------------------------------------------------------------------------------- configuration
def data_overrides(cvc: Path, budget: float | None, manifest: Path | None = None) -> list[str]:
    """CVC-ClinicDB as a manifest source grouped by sequence; ``budget`` None = every train image labelled."""
    sets = ["data.source=manifest", f"data.manifest={manifest or cvc / 'index.csv'}", f"data.root={cvc}",
            "data.columns={group: sequence}", "data.channels=3", "data.num_workers=0", "data.split_seed=0"]
    return [*sets, f"data.labelled={'null' if budget is None else budget}"]


def vit_overrides(args: argparse.Namespace, method: str, seed: int, decoder: str = "fusion") -> list[str]:
    sets = [f"finetune.image_size={args.size}", f"finetune.batch_size={args.batch_size}", "finetune.epochs=100000",
            "finetune.patience=100000", f"finetune.max_minutes={args.minutes}", f"finetune.seed={seed}",
            f"finetune.lr={args.lr}", f"finetune.val_every={args.val_every}", f"model.arch={args.arch}",
            f"finetune.head_hidden={args.head_hidden}", "train.num_threads=" + str(args.threads), *DECODERS[decoder]]
    if method == "full-random":  # from scratch: the backbone needs the head's learning rate, not the 1e-5 of tuning
        sets.append(f"finetune.backbone_lr={args.lr}")
    return sets


# ------------------------------------------------------------------------------------------------------ workers
def run_vit(job: dict[str, Any]) -> dict[str, Any]:
    """One dinomed fine-tuning run; returns its test metrics."""
    from rich.console import Console

    from dinomed.api import finetune

    mode = job["method"].split("-")[0]
    result = finetune("endoscopy", task=job["task"], backbone=job["backbone"], mode=mode, overrides=job["overrides"],
                      out=job["out"], console=Console(quiet=True))
    if job.get("overlay") is not None:
        from dinomed.api import load_model

        np.save(Path(job["out"]) / "overlay.npy", load_model(job["out"]).predict(overlay_image(job)).astype(np.uint8))
    return {**result.metrics["test"], "epochs": result.metrics["epochs"], "steps": result.metrics["steps"],
            "labelled": result.metrics["labelled"], "trainable": result.metrics["parameters"]["trainable"]}


def run_unet(job: dict[str, Any]) -> dict[str, Any]:
    """MONAI UNet from scratch at 144x192 on the same splits, loss, augmentation, time budget and selection rule."""
    import torch
    from monai.networks.nets import UNet
    from torch.utils.data import DataLoader

    from dinomed.augment.multicrop import build_eval_transform
    from dinomed.augment.paired import build_paired_transform
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import splits_for
    from dinomed.finetuning.losses import SegmentationLoss
    from dinomed.finetuning.metrics import SegmentationMetrics
    from dinomed.finetuning.trainer import TaskSamples, TaskView
    from dinomed.recipe import load_recipe

    recipe = load_recipe("endoscopy", overrides=job["overrides"])
    torch.manual_seed(job["seed"])
    torch.set_num_threads(job["threads"])
    dataset = build_dataset(recipe.data, "endoscopy")
    splits = splits_for(TaskView(dataset, "mask"), recipe.data)
    size = tuple(job["size"])
    augment = build_paired_transform("endoscopy", recipe.augment, size, 3)
    evaluate_tf = build_eval_transform("endoscopy", size, 3)
    train_set = TaskSamples(dataset, splits.labelled, evaluate_tf, "mask", augment=augment, seed=job["seed"])
    loaders = {name: DataLoader(TaskSamples(dataset, getattr(splits, name), evaluate_tf, "mask"), batch_size=8)
               for name in ("val", "test")}
    model = UNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                 num_res_units=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=job["lr"], weight_decay=1e-4)
    loss_fn = SegmentationLoss()

    def score(split: str) -> dict[str, float]:
        model.eval()
        metrics = SegmentationMetrics(2)
        with torch.no_grad():
            for images, masks in loaders[split]:
                metrics.update(model(images), masks)
        return metrics.compute()

    deadline, epoch, steps, best, best_state = time.monotonic() + 60 * job["minutes"], 0, 0, -1.0, None
    generator = torch.Generator()
    while epoch == 0 or time.monotonic() < deadline:
        train_set.set_epoch(epoch)
        generator.manual_seed(job["seed"] * 100003 + epoch)
        model.train()
        for images, masks in DataLoader(train_set, batch_size=job["batch_size"], shuffle=True, generator=generator,
                                        drop_last=len(train_set) > job["batch_size"]):
            loss = loss_fn(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if time.monotonic() >= deadline:
                break
        epoch += 1
        if epoch % job["val_every"] and time.monotonic() < deadline:
            continue
        dice = score("val")["dice"]
        if dice > best:
            best, best_state = dice, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    if job.get("overlay") is not None:
        from dinomed.augment.backend import resize

        frame = overlay_image(job)
        with torch.no_grad():
            small = model.eval()(evaluate_tf(frame)["image"][None]).argmax(1)[0].numpy().astype(np.uint8)
        Path(job["out"]).mkdir(parents=True, exist_ok=True)
        np.save(Path(job["out"]) / "overlay.npy", resize(small, frame.shape[:2], nearest=True))
    return {**score("test"), "epochs": epoch, "steps": steps, "labelled": len(splits.labelled),
            "trainable": sum(p.numel() for p in model.parameters())}


def overlay_image(job: dict[str, Any]) -> np.ndarray:
    """The overlay frame (dataset index ``job["overlay"]``) as the model reads it: float (H, W, 3) in [0, 1]."""
    from dinomed.data.datasets import build_dataset
    from dinomed.recipe import load_recipe

    recipe = load_recipe("endoscopy", overrides=job["overrides"])
    return build_dataset(recipe.data, "endoscopy")[job["overlay"]]["image"]


def overlay_frame(cvc: Path) -> tuple[int, np.ndarray, np.ndarray]:
    """A fixed test frame for the figure: of the test frames, the one with the median polyp area (index, image,
    mask)."""
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import splits_for
    from dinomed.finetuning.trainer import TaskView
    from dinomed.recipe import load_recipe

    recipe = load_recipe("endoscopy", overrides=data_overrides(cvc, None))
    dataset = build_dataset(recipe.data, "endoscopy")
    test = splits_for(TaskView(dataset, "mask"), recipe.data).test
    areas = sorted((float((dataset[i]["mask"] > 0).mean()), i) for i in test[:: max(1, len(test) // 40)])
    index = areas[len(areas) // 2][1]
    return index, dataset[index]["image"], dataset[index]["mask"]


def overlay_figure(results: list[dict[str, Any]], frame: tuple[int, np.ndarray, np.ndarray], path: Path) -> None:
    """The overlay frame with the ground truth (green) and each method's prediction (red) outlined."""
    import cv2
    from matplotlib.figure import Figure

    from dinomed.report.plots import to_png

    runs = [r for r in results if r.get("overlay") is not None and (Path(r["out"]) / "overlay.npy").is_file()]
    _, image, truth = frame
    fig = Figure(figsize=(3.2 * (len(runs) + 1), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(runs) + 1))

    def outline(ax: Any, mask: np.ndarray, color: str) -> None:
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            ax.plot(c[:, 0, 0], c[:, 0, 1], color=color, lw=1.2)

    for ax, r in zip(axes, [None, *runs]):
        ax.imshow(image)
        outline(ax, truth, "lime")
        if r is None:
            ax.set_title("test frame, ground truth", fontsize=8)
        else:
            outline(ax, np.load(Path(r["out"]) / "overlay.npy"), "red")
            ax.set_title(f"{r['method']}\nDice (test split) {r['dice']:.2f}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_png(fig))


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job and add its wall time and this process's peak resident memory."""
    start = time.perf_counter()
    metrics = run_unet(job) if job["method"] == "unet" else run_vit(job)
    return {**job, **metrics, "wall_s": time.perf_counter() - start, "peak_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: a forked-and-exec'd child inherits the
    parent's ru_maxrss, which would report the orchestrating process instead of the run."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux, an upper bound


def in_subprocess(job: dict[str, Any]) -> dict[str, Any]:
    """``worker(job)`` in a fresh interpreter (own ru_maxrss, no state shared between methods); a run whose folder
    already holds its result is not run again."""
    saved = Path(job["out"]) / RESULT_FILE
    if saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"]), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{job['method']} (budget {job['budget']}, seed {job['seed']}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    saved.write_text(json.dumps(result), encoding="utf-8")
    return result


# -------------------------------------------------------------------------------------------------- pretraining
def train_split_manifest(cvc: Path, folder: Path) -> Path:
    """A copy of ``index.csv`` listing only the train split's frames (the fine-tuning split, same seed)."""
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import splits_for
    from dinomed.finetuning.trainer import TaskView
    from dinomed.recipe import load_recipe

    recipe = load_recipe("endoscopy", overrides=data_overrides(cvc, None))
    dataset = build_dataset(recipe.data, "endoscopy")
    train = {dataset.records[i].key for i in splits_for(TaskView(dataset, "mask"), recipe.data).train}
    with open(cvc / "index.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows, fields = [row for row in reader if row["image"] in train], reader.fieldnames
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "train_index.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def pretrain_backbone(args: argparse.Namespace, work: Path) -> Path:
    """DINO pretraining (endoscopy recipe, --quick profile) on the train split's frames only; the run dir."""
    from dinomed.api import pretrain

    manifest = train_split_manifest(args.cvc, work)
    sets = [*data_overrides(args.cvc, None, manifest), f"train.epochs={args.pretrain_epochs}",
            "train.output_dir=" + str(work), "train.run_name=pretrain", f"model.arch={args.arch}",
            f"train.num_threads={args.threads * args.jobs}"]  # runs alone: every core the grid will share
    if args.smoke:
        sets += ["augment.global_size=32", "augment.local_size=16", "augment.local_crops=2", "train.batch_size=4",
                 "train.max_steps=2", "model.out_dim=256", "model.hidden_dim=64", "model.bottleneck_dim=32"]
    return pretrain("endoscopy", overrides=sets, quick=True).run_dir


# ------------------------------------------------------------------------------------------------------- report
def summarise(results: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["task"], r["method"], r["budget"]), []).append(r)
    rows = []
    for (task, method, budget), runs in groups.items():
        row = {"task": task, "method": method, "budget": "100 %" if budget is None else f"{100 * budget:g} %",
               "labelled": runs[0]["labelled"], "seeds": len(runs)}
        for key in metrics:
            if key in runs[0]:
                values = np.array([r[key] for r in runs], dtype=float)
                row[key] = f"{values.mean():.3f} ± {values.std():.3f}"
        if "trainable" in runs[0]:
            row["trainable"] = f"{runs[0]['trainable'] / 1e6:.2f} M"
        row.update(minutes=f"{np.mean([r['wall_s'] for r in runs]) / 60:.1f}",
                   steps=f"{np.mean([r['steps'] for r in runs]):.0f}", peak_mb=f"{max(r['peak_mb'] for r in runs):.0f}")
        rows.append(row)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace, load: str) -> str:
    from rich.console import Console
    from rich.table import Table

    columns = [c for c in ("task", "method", "budget", "labelled", "seeds", "dice", "iou", "abs_rel", "delta1",
                           "trainable", "minutes", "steps", "peak_mb") if any(c in r for r in rows)]
    table = Table(title="Label-scarce fine-tuning (test split, mean ± std over seeds)")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r.get(c, "-")) for c in columns])
    Console(width=180).print(table)
    lines = ["# Label-scarce segmentation on CVC-ClinicDB", "",
             f"Command: `python benchmarks/bench_label_scarce.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {platform.machine()}, {os.cpu_count()} CPUs, "
             f"load average at start {load}; {args.minutes} min per run, {args.jobs} run(s) at once with {args.threads} "
             f"thread(s) each, ViT "
             f"{args.arch} at {args.size} px, UNet at {UNET_SIZE[0]}x{UNET_SIZE[1]}. Split: CVC-ClinicDB has no split "
             "of its own, so a grouped split by `sequence` (`data.split_seed` 0: whole sequences in train, val or "
             "test); the depth rows use the endoscopy phantom's grouped split.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "-")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cvc", type=Path, default=CVC, help="CVC-ClinicDB folder holding index.csv")
    parser.add_argument("--pretrained", type=Path, help="pretrain run dir / export folder for the *-pretrained methods")
    parser.add_argument("--pretrain-epochs", type=int,
                        help="pretrain a backbone here for N epochs (--quick profile, train split frames only)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--decoders", nargs="+", default=["fusion"], choices=list(DECODERS),
                        help="each ViT method once per decoder (finetune.decoder / finetune.detail)")
    parser.add_argument("--head-hidden", type=int, default=128, help="finetune.head_hidden of the ViT heads")
    parser.add_argument("--depth-minutes", type=float, help="budget of the depth runs (default --minutes)")
    parser.add_argument("--overlay", action="store_true",
                        help="draw one test frame per seg method (first seed, smallest budget) to " + str(OVERLAY))
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.05, 0.1, 0.25, 1.0],
                        help="labelled fractions of the train split (1.0 = all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=6.0, help="wall-clock training budget per run")
    parser.add_argument("--arch", default="vit_tiny_patch16_224")
    parser.add_argument("--size", type=int, default=224, help="ViT input side (patch multiple)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-every", type=int, default=1,
                        help="epochs between validations (both the ViT runs and the UNet); raise it for tiny budgets")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (jobs x threads <= cores keeps runs fair)")
    parser.add_argument("--tasks", nargs="+", default=["seg"], choices=("seg", "depth"),
                        help="seg: CVC-ClinicDB budgets; depth: the endoscopy-phantom depth variant")
    parser.add_argument("--work", type=Path, help="folder for run directories (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown results file")
    parser.add_argument("--smoke", action="store_true", help="seconds per run at 32 px, one budget and seed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return args
    if args.smoke:
        args.size, args.minutes, args.budgets, args.seeds, args.batch_size = 32, 0.02, [0.1], [0], 4
        args.pretrain_epochs = args.pretrain_epochs or (None if args.pretrained else 2)
    needs_backbone = any(m in PRETRAINED for m in args.methods)
    if needs_backbone and not (args.pretrained or args.pretrain_epochs):
        parser.error("the *-pretrained methods need --pretrained RUN_DIR or --pretrain-epochs N")
    if not (args.cvc / "index.csv").is_file():
        parser.error(f"{args.cvc}: no index.csv (CVC-ClinicDB manifest); pass --cvc")
    return args


def variants(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(method label, method, decoder): every ViT method once per decoder; the UNet once."""
    return [(m if m == "unet" or args.decoders == ["fusion"] else f"{m}/{d}", m, d)
            for m in args.methods for d in (["fusion"] if m == "unet" else args.decoders)]


def jobs(args: argparse.Namespace, backbone: str | None, work: Path, overlay: int | None) -> list[dict[str, Any]]:
    out = []
    for budget in args.budgets:
        fraction = None if budget >= 1.0 else budget
        for label, method, decoder in variants(args):
            for seed in args.seeds:
                base = {"task": "seg", "method": label, "budget": fraction, "seed": seed, "threads": args.threads,
                        "out": str(work / f"seg-{label.replace('/', '-')}-{budget:g}-{seed}"),
                        "overlay": overlay if seed == args.seeds[0] and budget == min(args.budgets) else None}
                if method == "unet":
                    size = (32, 32) if args.smoke else UNET_SIZE
                    out.append({**base, "overrides": data_overrides(args.cvc, fraction), "size": size, "lr": args.lr,
                                "minutes": args.minutes, "batch_size": args.batch_size, "val_every": args.val_every})
                else:
                    out.append({**base, "backbone": backbone if method in PRETRAINED else "random", "overrides": [
                        *data_overrides(args.cvc, fraction), *vit_overrides(args, method, seed, decoder)]})
    return out


def depth_jobs(args: argparse.Namespace, backbone: str | None, work: Path) -> list[dict[str, Any]]:
    """The depth variant: endoscopy phantom (metric depth known), every ViT method and decoder, each budget, with
    ``--depth-minutes`` per run."""
    jobs_ = []
    for budget in args.budgets:
        phantom = ["data.source=phantom", "data.num_workers=0", f"data.labelled={'null' if budget >= 1 else budget}",
                   "data.phantom.count=" + ("48" if args.smoke else "600"), f"data.phantom.size=[{args.size},{args.size}]"]
        for label, method, decoder in variants(args):
            if method == "unet":
                continue
            for seed in args.seeds:
                sets = [*phantom, *vit_overrides(args, method, seed, decoder),
                        f"finetune.max_minutes={args.depth_minutes or args.minutes}"]
                jobs_.append({"task": "depth", "method": label, "budget": None if budget >= 1 else budget, "seed": seed,
                              "threads": args.threads, "out": str(work / f"depth-{label.replace('/', '-')}-{budget:g}-{seed}"),
                              "backbone": backbone if method in PRETRAINED else "random", "overrides": sets})
    return jobs_


def main() -> None:
    args = parse()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console
    from rich.progress import track

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").is_file() else "n/a"
    work = args.work or Path(tempfile.mkdtemp(prefix="dinomed-label-scarce-"))
    backbone = str(args.pretrained) if args.pretrained else None
    if backbone is None and args.pretrain_epochs and any(m in PRETRAINED for m in args.methods):
        backbone = str(pretrain_backbone(args, work))
    frame = overlay_frame(args.cvc) if args.overlay and "seg" in args.tasks else None
    todo = [*(jobs(args, backbone, work, frame[0] if frame else None) if "seg" in args.tasks else []),
            *(depth_jobs(args, backbone, work) if "depth" in args.tasks else [])]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is its own subprocess
        results = list(track(pool.map(in_subprocess, todo), total=len(todo), description="label-scarce runs"))
    if frame is not None:
        overlay_figure([r for r in results if r["task"] == "seg"], frame, work / OVERLAY.name if args.smoke else OVERLAY)
    rows = summarise(results, ("dice", "iou", "abs_rel", "delta1"))
    text = report(rows, args, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1), encoding="utf-8")
    Console().print(f"Results written to {args.out} (run directories in {work})")


if __name__ == "__main__":
    main()
