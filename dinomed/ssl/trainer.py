"""DINO pretraining loop: data -> multi-crop -> student/teacher -> loss -> step, EMA, schedules, monitor.

Everything a run needs to continue lives in its checkpoint (student, teacher, optimizer, loss centre, grad
scaler, step, RNG state); schedules are pure functions of the resolved config and the data order is a pure
function of (seed, epoch), so a resumed run follows exactly the path an uninterrupted one would have.
Multi-process (torchrun) is prepared for: the sampler shards by rank, the loss centre is all-reduced inside
:class:`~dinomed.ssl.dino.DINOLoss`, and only rank 0 writes files.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from dinomed.augment.multicrop import MultiCropDataset, build_multicrop
from dinomed.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dinomed.data.datasets import build_dataset
from dinomed.data.sampler import EpochSampler
from dinomed.models.backbones import BackboneSpec, save_backbone
from dinomed.recipe import Recipe, load_recipe
from dinomed.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MetricsLog,
    default_run_name,
    new_run_dir,
    read_metrics,
    write_json,
)
from dinomed.ssl.dino import DINOLoss
from dinomed.ssl.ema import update_teacher
from dinomed.ssl.koleo import KoLeoLoss
from dinomed.ssl.monitor import collapse_stats, collapse_verdict, is_collapsing
from dinomed.ssl.networks import build_student_teacher
from dinomed.ssl.optim import adamw, cancel_last_layer_gradients, clip_gradients, param_groups
from dinomed.ssl.schedules import Schedules, build_schedules

CHECKPOINT = "checkpoints/last.pt"
SUMMARY_FILE = "summary.json"
# Keys that may change when resuming: they do not alter the optimisation path.
RESUME_OVERRIDABLE = ("train.device", "train.num_threads", "data.num_workers", "train.amp", "train.max_steps")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept untouched."""


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: where the run lives, its final metrics and the teacher backbone."""

    run_dir: Path
    metrics: dict[str, Any]
    backbone: nn.Module
    backbone_path: Path
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present (our users train on one GPU), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is '{name}' but CUDA is not available; use 'auto' or 'cpu'")
    return device


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _worker_init(_: int) -> None:
    """Loader workers do the augmentation; one thread each avoids oversubscribing small machines."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class _StopRequest:
    """First Ctrl-C / SIGTERM asks the loop to save and stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator["_StopRequest"]:
        try:
            previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread (e.g. a notebook worker): no handlers, Ctrl-C raises as usual
            yield self
            return
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class DINOTrainer:
    """Owns one pretraining run: build from a resolved recipe (new run) or from a run dir (resume)."""

    def __init__(self, recipe: Recipe, run_dir: Path, *, console: Console | None = None) -> None:
        self.recipe, self.run_dir = recipe, run_dir
        self.console = console or Console()
        self.rank, self.world = _dist_info()
        train = recipe.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        self.device = resolve_device(train.device)
        self.amp = train.amp and self.device.type == "cuda"
        torch.manual_seed(train.seed)

        self.dataset = build_dataset(recipe.data, recipe.modality)
        if recipe.data.uses_phantom:
            size = "x".join(str(s) for s in recipe.data.phantom.size)
            self.console.print(
                f"No data root in the recipe: using the built-in {recipe.modality} phantom "
                f"({len(self.dataset)} synthetic images, {size} px)."
            )
        self.multicrop = build_multicrop(recipe.modality, recipe.augment, recipe.data.channels)
        self.crops = MultiCropDataset(self.dataset, self.multicrop, seed=train.seed)
        self.steps_per_epoch = len(self.dataset) // (train.batch_size * self.world)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"train.batch_size {train.batch_size} x {self.world} process(es) exceeds the dataset size "
                f"{len(self.dataset)}; lower train.batch_size or add data"
            )
        self.total_steps = train.epochs * self.steps_per_epoch
        self.last_step = min(self.total_steps, train.max_steps or self.total_steps)
        self.schedules: Schedules = build_schedules(
            recipe.dino, recipe.optim, train.epochs, self.steps_per_epoch, train.batch_size * self.world
        )

        self.student, self.teacher, spec = build_student_teacher(
            recipe.model, in_chans=recipe.data.channels, img_size=recipe.augment.global_size
        )
        self.spec = BackboneSpec(spec.arch, spec.kwargs, {"recipe": recipe.name, "modality": recipe.modality})
        self.student.to(self.device)
        self.teacher.to(self.device)
        self.loss_fn = DINOLoss(
            out_dim=recipe.model.out_dim,
            warmup_teacher_temp=recipe.dino.warmup_teacher_temp,
            teacher_temp=recipe.dino.teacher_temp,
            warmup_teacher_temp_epochs=recipe.dino.warmup_teacher_temp_epochs,
            student_temp=recipe.dino.student_temp,
            center_momentum=recipe.dino.center_momentum,
        ).to(self.device)
        self.koleo = KoLeoLoss() if recipe.dino.koleo_weight > 0 else None
        self.optimizer = adamw(param_groups(self.student), self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0

        self.sampler = EpochSampler(len(self.dataset), seed=train.seed, rank=self.rank, world=self.world)
        workers = recipe.data.num_workers
        self.loader = DataLoader(
            self.crops,
            batch_size=train.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            worker_init_fn=_worker_init if workers else None,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
        )

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_fn.load_state_dict(state["loss"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT)

    # ------------------------------------------------------------------------------------------ step
    def _set_hyperparameters(self, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.schedules.lr[step])
            group["weight_decay"] = float(self.schedules.wd[step]) if group.get("regularized", True) else 0.0

    def train_step(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimisation step at ``self.step``; returns the loss and what the monitor needs."""
        step, n_global = self.step, self.recipe.augment.global_crops
        epoch = step // self.steps_per_epoch
        self._set_hyperparameters(step)
        crops = [c.to(self.device, non_blocking=True) for c in crops]
        teacher_temp = float(self.schedules.teacher_temp[step])
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with autocast:
            with torch.no_grad():
                teacher_out, teacher_cls = self.teacher(crops[:n_global])
            student_out, student_cls = self.student(crops)
            center = self.loss_fn.center.clone()
            loss = self.loss_fn(teacher_out, student_out, teacher_temp=teacher_temp)
            if self.koleo is not None:
                koleo = sum(self.koleo(cls) for cls in student_cls[:n_global])  # DINOv2: summed over global crops
                loss = loss + self.recipe.dino.koleo_weight * koleo
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.recipe.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.student, self.recipe.optim.clip_grad)
        cancel_last_layer_gradients(self.student.head, epoch, self.recipe.dino.freeze_last_layer)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        update_teacher(self.student, self.teacher, float(self.schedules.momentum[step]))
        self.step += 1
        monitor = {"teacher_out": teacher_out, "student_out": student_out, "center": center,
                   "teacher_temp": teacher_temp, "teacher_cls": torch.cat(teacher_cls)}
        return loss.detach(), monitor

    def _record(self, loss: float, monitor: dict[str, Any], img_per_s: float) -> dict[str, Any]:
        step = self.step - 1
        with torch.no_grad():
            stats = collapse_stats(
                [t.float() for t in monitor["teacher_out"]],
                [s.float() for s in monitor["student_out"]],
                monitor["center"].float(),
                monitor["teacher_temp"],
                self.recipe.dino.student_temp,
                monitor["teacher_cls"].float(),
            )
        return {
            "step": self.step,
            "epoch": step // self.steps_per_epoch,
            "loss": loss,
            "lr": float(self.schedules.lr[step]),
            "wd": float(self.schedules.wd[step]),
            "momentum": float(self.schedules.momentum[step]),
            "teacher_temp": float(self.schedules.teacher_temp[step]),
            "img_per_s": img_per_s,
            **stats,
            "log_k": math.log(self.recipe.model.out_dim),
            "embed_dim": int(monitor["teacher_cls"].shape[-1]),
            "time": time.time(),
        }

    # ------------------------------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, Any]]:
        """Train from ``self.step`` to the last step; checkpoints, logs, and stops cleanly on Ctrl-C."""
        train = self.recipe.train
        log = MetricsLog(self.run_dir / METRICS_FILE, resume_step=self.step) if self.rank == 0 else None
        history: list[dict[str, Any]] = []
        self.student.train()
        self.teacher.train()
        progress = Progress(
            TextColumn("[bold]pretrain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  m {task.fields[mom]:.4f}"),
            TextColumn("{task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.rank != 0,
        )
        warned = False
        with _StopRequest().installed() as stop, progress:
            task = progress.add_task("pretrain", total=self.last_step, completed=self.step,
                                     loss=float("nan"), lr=0.0, mom=0.0, ips=0.0)
            tick, images = time.perf_counter(), 0
            while self.step < self.last_step and not stop.requested:
                epoch = self.step // self.steps_per_epoch
                self.crops.set_epoch(epoch)
                self.sampler.set_epoch(epoch, skip=(self.step - epoch * self.steps_per_epoch) * train.batch_size)
                for crops in self.loader:
                    try:
                        loss, monitor = self.train_step(crops)
                    except TrainingDiverged as err:
                        raise TrainingDiverged(self._diverged_message(str(err))) from None
                    images += crops[0].shape[0] * self.world
                    if self.step % train.log_every == 0 or self.step == self.last_step:
                        now = time.perf_counter()
                        record = self._record(loss.item(), monitor, images / max(now - tick, 1e-9))
                        tick, images = now, 0
                        history.append(record)
                        if log:
                            log.write(record)
                        warning = is_collapsing(record)
                        if warning and not warned:
                            self.console.print(f"[bold yellow]warning:[/] {warning}")
                            warned = True
                        progress.update(task, loss=record["loss"], lr=record["lr"], mom=record["momentum"],
                                        ips=record["img_per_s"])
                    progress.update(task, completed=self.step)
                    if self.step % train.checkpoint_every == 0:
                        self.save()
                    if self.step >= self.last_step or stop.requested or self.step % self.steps_per_epoch == 0:
                        break
        self.save()
        if stop.requested:
            self.console.print(f"Interrupted at step {self.step}: checkpoint saved; continue with "
                               f"`dinomed pretrain --resume {self.run_dir}`.")
        return history

    def _diverged_message(self, what: str) -> str:
        ckpt = self.run_dir / CHECKPOINT
        kept = f"last good checkpoint kept at {ckpt}" if ckpt.exists() else "no checkpoint had been written yet"
        return (f"training diverged: {what}; {kept}. Try a lower optim.lr, a lower optim.clip_grad or a longer "
                f"optim.warmup_epochs.")

    def export(self) -> Path:
        """Teacher backbone (the better one in DINO) as safetensors + timm description."""
        spec = BackboneSpec(self.spec.arch, self.spec.kwargs, {**self.spec.meta, "step": self.step})
        return save_backbone(self.teacher.backbone, spec, self.run_dir / "export")


def _start(recipe: Recipe, console: Console) -> DINOTrainer:
    name = recipe.train.run_name or default_run_name(recipe.name)
    run_dir = new_run_dir(recipe.train.output_dir, name)
    (run_dir / CONFIG_FILE).write_text(recipe.to_yaml(), encoding="utf-8")
    console.print(f"Run directory: {run_dir}")
    return DINOTrainer(recipe, run_dir, console=console)


def _resume(run_dir: Path, overrides: list[str], console: Console) -> DINOTrainer:
    config = run_dir / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir}: not a pretrain run directory (no {CONFIG_FILE})")
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key not in RESUME_OVERRIDABLE:
            raise ValueError(f"--set {text}: cannot change '{key}' when resuming (it would change the run); "
                             f"allowed: {', '.join(RESUME_OVERRIDABLE)}")
    recipe = load_recipe(config, overrides)
    trainer = DINOTrainer(recipe, run_dir, console=console)
    ckpt = run_dir / CHECKPOINT
    if ckpt.is_file():
        trainer.load_state_dict(load_checkpoint(ckpt, map_location=trainer.device))
        console.print(f"Resuming {run_dir} at step {trainer.step} of {trainer.last_step}.")
    else:
        console.print(f"{run_dir} has no checkpoint yet: starting it from step 0.")
    return trainer


def pretrain(
    recipe: str | Path | dict[str, Any] | Recipe | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    quick: bool = False,
    resume: str | Path | None = None,
    console: Console | None = None,
) -> PretrainResult:
    """Run (or resume) DINO pretraining and export the teacher backbone.

    Example:
        >>> result = pretrain("oct", ["train.max_steps=20"], quick=True)
        >>> result.backbone_path  # runs/oct-.../export/backbone.safetensors
    """
    console = console or Console()
    if resume is not None:
        trainer = _resume(Path(resume), list(overrides), console)
    elif recipe is None:
        raise ValueError("pretrain needs a recipe (name or YAML path) or resume=RUN_DIR")
    else:
        trainer = _start(load_recipe(recipe, list(overrides), quick=quick), console)
    history = trainer.fit()
    run_dir = trainer.run_dir
    records = read_metrics(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).exists() else history
    finished = trainer.step >= trainer.last_step
    weights = trainer.export() if finished else run_dir / "export" / "backbone.safetensors"
    verdict, why = collapse_verdict(records) if records else ("unknown", "no metrics recorded")
    skipped = [{"path": str(path), "reason": reason} for path, reason in getattr(trainer.dataset, "skipped", [])]
    if skipped:  # data.on_error: skip — say what was left out, never silently
        console.print(f"[yellow]Skipped {len(skipped)} unreadable file(s)[/] (data.on_error: skip; listed in "
                      f"{run_dir / SUMMARY_FILE}):")
        for item in skipped[:20]:
            console.print(f"  {item['path']}: {item['reason']}", highlight=False)
    metrics = {
        "step": trainer.step,
        "last_step": trainer.last_step,
        "finished": finished,
        "loss": records[-1]["loss"] if records else None,
        "img_per_s": records[-1]["img_per_s"] if records else None,
        "verdict": verdict,
        "verdict_detail": why,
        "backbone": str(weights) if finished else None,
        "skipped": skipped,
    }
    write_json(run_dir / SUMMARY_FILE, metrics)
    if finished:
        console.print(f"Collapse check: [bold]{verdict}[/] — {why}")
        console.print(f"Exported teacher backbone: {weights}")
    return PretrainResult(run_dir, metrics, trainer.teacher.backbone, weights, records)
