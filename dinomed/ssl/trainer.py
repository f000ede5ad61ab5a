"""DINO pretraining loop: data -> multi-crop -> student/teacher -> loss -> engine step, EMA, schedules, monitor.

Everything a run needs to continue lives in its checkpoint (student, teacher, optimizer, loss centre, grad
scaler, step, RNG state); schedules are pure functions of the resolved config and the data order is a pure
function of (seed, epoch), so a resumed run follows exactly the path an uninterrupted one would have.
Device, precision, processes and checkpoint writing come from :class:`~dinomed.engine.Engine`; under torchrun
the student is wrapped in DDP, each process reads its own shard of every epoch and only rank 0 writes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from dinomed.augment.backend import worker_init
from dinomed.augment.multicrop import MultiCropDataset, build_eval_transform, build_multicrop
from dinomed.data.datasets import build_dataset, describe_source
from dinomed.data.records import SPLIT_NAMES
from dinomed.data.sampler import EpochSampler
from dinomed.data.splits import pretraining_subset
from dinomed.engine import METRICS_FILE, Engine, MetricsLog, StopRequest, TrainingDiverged, progress_bar, read_metrics
from dinomed.models.backbones import BackboneSpec, save_backbone
from dinomed.recipe import Recipe
from dinomed.seeding import rng_state, set_rng_state
from dinomed.ssl.dino import DINOLoss
from dinomed.ssl.ema import update_teacher
from dinomed.ssl.koleo import KoLeoLoss
from dinomed.ssl.monitor import collapse_stats, is_collapsing
from dinomed.ssl.networks import build_student_teacher
from dinomed.ssl.optim import adamw, cancel_last_layer_gradients, clip_gradients, param_groups
from dinomed.ssl.probes import NOT_LEARNING, Probes, ProbeSet, is_forgetting, probe_indices, quality_line, quality_verdict
from dinomed.ssl.schedules import Schedules, build_schedules

CHECKPOINT = "checkpoints/last.pt"
DIVERGED_HINT = "Try a lower optim.lr, a lower optim.clip_grad or a longer optim.warmup_epochs."


class DINOTrainer:
    """Owns one pretraining run: build from a resolved recipe and its run directory, then :meth:`fit`."""

    def __init__(self, recipe: Recipe, run_dir: Path, *, console: Console | None = None) -> None:
        self.recipe, self.run_dir = recipe, run_dir
        train = recipe.train
        self.engine = Engine(device=train.device, precision=train.precision, num_threads=train.num_threads,
                             seed=train.seed, loggers=train.loggers, console=console)
        self.console, self.world = self.engine.console, self.engine.process.world_size

        self.dataset, self.splits = pretraining_subset(build_dataset(recipe.data, recipe.modality), recipe.data)
        if self.splits is not None:
            held_out = sorted(set(SPLIT_NAMES) - set(recipe.data.pretrain_splits))
            self.console.print(f"Pretraining on the {' + '.join(recipe.data.pretrain_splits)} part(s) of the data's "
                               f"own split: {len(self.dataset)} images; held out: "
                               + (", ".join(f"{name} ({len(self.splits[name])})" for name in held_out) or "none"))
        self.console.print(describe_source(recipe.data, recipe.modality, len(self.dataset)), highlight=False)
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
        self.student_step = self.engine.wrap(self.student)  # DDP-wrapped under torchrun: averages gradients
        self.teacher.to(self.engine.device)
        self.loss_fn = DINOLoss(
            out_dim=recipe.model.out_dim,
            warmup_teacher_temp=recipe.dino.warmup_teacher_temp,
            teacher_temp=recipe.dino.teacher_temp,
            warmup_teacher_temp_epochs=recipe.dino.warmup_teacher_temp_epochs,
            student_temp=recipe.dino.student_temp,
            center_momentum=recipe.dino.center_momentum,
        ).to(self.engine.device)
        self.koleo = KoLeoLoss() if recipe.dino.koleo_weight > 0 else None
        groups = param_groups(self.student, layer_decay=recipe.optim.layer_decay)
        self.optimization = self.engine.optimization(adamw(groups, self.engine.device))
        self.step = 0

        self.probes = self._probes() if train.probe_every and self.engine.is_main else None
        self.hopeless = False  # set when train.stop_when_not_learning and the probes say the run is not learning

        process = self.engine.process
        self.sampler = EpochSampler(len(self.dataset), seed=train.seed, rank=process.rank, world=self.world)
        workers = recipe.data.num_workers
        self.loader = DataLoader(self.crops, batch_size=train.batch_size, sampler=self.sampler, drop_last=True,
                                 generator=torch.Generator().manual_seed(train.seed),  # not the global RNG
                                 **self.engine.loader_options(workers, init=worker_init))

    def _probes(self) -> Probes:
        recipe = self.recipe
        transform = build_eval_transform(recipe.modality, recipe.augment.global_size, recipe.data.channels)
        indices = probe_indices(self.dataset, recipe.train.probe_images, recipe.train.seed)
        return Probes(ProbeSet.from_dataset(self.dataset, indices, transform),
                      num_classes=len(self.dataset.class_names or []))

    def calibrate_probes(self) -> None:
        """The probes' reference values at step 0 (main process): a random-init backbone of the architecture,
        built without touching the run's random state, and in a continued run the init's own features."""
        if self.probes is None:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe.train.seed)
            random_init = timm.create_model(self.spec.arch, pretrained=False, **self.spec.kwargs)
        self.probes.reference = self.probes.measure(random_init.to(self.engine.device), suffix="_random")
        if self.recipe.model.init is not None:
            self.probes.init_features = self.probes.features(self.teacher.backbone)

    @property
    def settled_step(self) -> int:
        """The step after which the probes judge the run: the end of the lr warm-up and of any backbone freeze."""
        warmup = int(round(self.recipe.optim.warmup_epochs * self.steps_per_epoch))
        return max(warmup, math.ceil(self.recipe.train.freeze_backbone_epochs * self.steps_per_epoch))

    def probe_due(self) -> bool:
        """Whether a probe belongs to the record written at this step: a multiple of ``train.probe_every`` was
        passed since the previous record (a pure function of the step, so a resumed run probes the same steps)."""
        every, log_every = self.recipe.train.probe_every, self.recipe.train.log_every
        previous = ((self.step - 1) // log_every) * log_every
        return self.probes is not None and (self.step // every > previous // every or self.step == self.last_step)

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            **self.optimization.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "step": self.step,
            "world_size": self.world,
            "rng": rng_state(),
            **({"probes": self.probes.state_dict()} if self.probes is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world:
            raise ValueError(
                f"{self.run_dir / CHECKPOINT}: the run was trained with {saved_world} process(es) but is resumed with "
                f"{self.world}; resume with `torchrun --nproc_per_node {saved_world}` (the global batch, and so the "
                "data order and schedules, depend on the number of processes)"
            )
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimization.load_state_dict(state)
        self.loss_fn.load_state_dict(state["loss"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        if self.probes is not None:
            if "probes" in state:
                self.probes.load_state_dict(state["probes"])
            else:  # a checkpoint from before probes existed: measure the random-init reference now
                self.calibrate_probes()

    def save(self) -> Path:
        return self.engine.save(self.state_dict(), self.run_dir / CHECKPOINT)

    # ------------------------------------------------------------------------------------------ step
    def _set_hyperparameters(self, step: int) -> None:
        """Scheduled lr (x each group's layer-decay scale; 0 for the backbone while it is frozen) and weight decay."""
        frozen = step < self.recipe.train.freeze_backbone_epochs * self.steps_per_epoch
        lr = float(self.schedules.lr[step])
        for group in self.optimization.param_groups:
            group["lr"] = 0.0 if frozen and group["backbone"] else lr * group["lr_scale"]
            group["weight_decay"] = float(self.schedules.wd[step]) if group["regularized"] else 0.0

    def train_step(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimisation step at ``self.step``; returns the loss and what the monitor needs."""
        step, n_global = self.step, self.recipe.augment.global_crops
        epoch = step // self.steps_per_epoch
        self._set_hyperparameters(step)
        crops = [c.to(self.engine.device, non_blocking=True) for c in crops]
        teacher_temp = float(self.schedules.teacher_temp[step])
        with self.engine.autocast():
            with torch.no_grad():
                teacher_out, teacher_cls = self.teacher(crops[:n_global])
            student_out, student_cls = self.student_step(crops)
        # the loss, centre and softmaxes stay in fp32 whatever the autocast dtype
        teacher_out, student_out = [t.float() for t in teacher_out], [s.float() for s in student_out]
        center = self.loss_fn.center.clone()
        loss = self.loss_fn(teacher_out, student_out, teacher_temp=teacher_temp)
        if self.koleo is not None:
            koleo = sum(self.koleo(cls.float()) for cls in student_cls[:n_global])  # DINOv2: summed over globals
            loss = loss + self.recipe.dino.koleo_weight * koleo
        clip = self.recipe.optim.clip_grad
        self.optimization.step(
            loss, where=f"step {step}",
            clip=(lambda: clip_gradients(self.student, clip)) if clip > 0 else None,
            before_step=lambda: cancel_last_layer_gradients(self.student.head, epoch, self.recipe.dino.freeze_last_layer),
        )
        update_teacher(self.student, self.teacher, float(self.schedules.momentum[step]))
        self.step += 1
        monitor = {"teacher_out": teacher_out, "student_out": student_out, "center": center,
                   "teacher_temp": teacher_temp, "teacher_cls": torch.cat(teacher_cls)}
        return loss.detach(), monitor

    def record(self, loss: float, monitor: dict[str, Any], img_per_s: float, data_wait: float) -> dict[str, Any]:
        step = self.step - 1
        stats = collapse_stats(monitor["teacher_out"], monitor["student_out"], monitor["center"].float(),
                               monitor["teacher_temp"], self.recipe.dino.student_temp, monitor["teacher_cls"].float())
        return {
            "step": self.step,
            "epoch": step // self.steps_per_epoch,
            "loss": loss,
            "lr": float(self.schedules.lr[step]),
            "wd": float(self.schedules.wd[step]),
            "momentum": float(self.schedules.momentum[step]),
            "teacher_temp": float(self.schedules.teacher_temp[step]),
            "img_per_s": img_per_s,
            "data_wait": data_wait,
            **stats,
            "log_k": math.log(self.recipe.model.out_dim),
            "embed_dim": int(monitor["teacher_cls"].shape[-1]),
            "time": time.time(),
        }

    # ------------------------------------------------------------------------------------------ loop
    def fit(self) -> StopRequest:
        """Train from ``self.step`` to the last step; checkpoints, logs, probes, and stops cleanly on Ctrl-C /
        SIGTERM (or, with ``train.stop_when_not_learning``, when the probes say the run is not learning)."""
        train = self.recipe.train
        log = self.engine.metrics_log(self.run_dir / METRICS_FILE, resume_step=self.step, loggers=train.loggers,
                                      prefix="pretrain")
        self.student.train()
        self.teacher.train()
        if log and self.probes is not None and self.step == 0:  # where the run starts: init (or random) values
            log.write({"step": 0, "epoch": 0, **self.probes.measure(self.teacher.backbone), "time": time.time()})
        reporter = _Reporter(self, log)
        with StopRequest().installed() as stop, reporter.progress:
            while self.step < self.last_step and not stop.requested:
                epoch = self.step // self.steps_per_epoch
                self.crops.set_epoch(epoch)
                self.sampler.set_epoch(epoch, skip=(self.step - epoch * self.steps_per_epoch) * train.batch_size)
                batches = iter(self.loader)
                while True:
                    crops = reporter.wait(batches)
                    if crops is None:
                        break
                    try:
                        loss, monitor = self.train_step(crops)
                    except TrainingDiverged as err:
                        raise err.at(self.run_dir / CHECKPOINT, DIVERGED_HINT) from None
                    reporter.stepped(crops[0].shape[0] * self.world, loss, monitor)
                    if self.step % train.checkpoint_every == 0:
                        self.save()
                    signalled, self.hopeless = self.engine.process.any_true(
                        stop.requested, self.hopeless, device=self.engine.device)  # every process stops together
                    if signalled and not stop.requested:
                        stop.signum = signal.SIGTERM  # another process was asked to stop
                    if self.step >= self.last_step or signalled or self.hopeless or self.step % self.steps_per_epoch == 0:
                        break
                if self.hopeless:
                    break
        if log:
            log.close()
        self.save()
        self.engine.process.barrier()
        return stop

    def export(self) -> Path:
        """Teacher backbone (the better one in DINO) as safetensors + timm description (main process only)."""
        spec = BackboneSpec(self.spec.arch, self.spec.kwargs, {**self.spec.meta, "step": self.step})
        folder = self.run_dir / "export"
        if self.engine.is_main:
            save_backbone(self.teacher.backbone, spec, folder)
        self.engine.process.barrier()
        return folder / "backbone.safetensors"


class _Reporter:
    """What a pretraining loop shows and logs besides the step: progress bar, wall-clock throughput and the share
    spent waiting for data, metrics records with the probes, collapse / forgetting warnings, the early stop."""

    def __init__(self, trainer: DINOTrainer, log: MetricsLog | None) -> None:
        self.trainer, self.log = trainer, log
        self.progress = progress_bar("pretrain", trainer.console, disable=not trainer.engine.is_main, fields=(
            "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  m {task.fields[mom]:.4f}  "
            "{task.fields[ips]:.1f} img/s  data wait {task.fields[wait]:.0%}  {task.fields[quality]}"))
        self.task = self.progress.add_task("pretrain", total=trainer.last_step, completed=trainer.step,
                                           loss=float("nan"), lr=0.0, mom=0.0, ips=0.0, wait=0.0, quality="")
        self.tick, self.images, self.waited = time.perf_counter(), 0, 0.0
        earlier = read_metrics(log.path) if log and log.path.exists() else []  # a resumed run's first loss
        self.first_loss = next((r["loss"] for r in earlier if "loss" in r), None)
        self.warned: set[str] = set()

    def wait(self, batches: Iterator[Any]) -> Any:
        """The next batch (``None`` at the end of the epoch), timing the wait."""
        before = time.perf_counter()
        batch = next(batches, None)
        self.waited += time.perf_counter() - before
        return batch

    def stepped(self, images: int, loss: torch.Tensor, monitor: dict[str, Any]) -> None:
        trainer, train = self.trainer, self.trainer.recipe.train
        self.images += images
        if trainer.step % train.log_every == 0 or trainer.step == trainer.last_step:
            self._record(loss, monitor)
        self.progress.update(self.task, completed=trainer.step)

    def _record(self, loss: torch.Tensor, monitor: dict[str, Any]) -> None:
        trainer = self.trainer
        elapsed = max(time.perf_counter() - self.tick, 1e-9)
        loss = trainer.engine.process.mean(loss)  # every process records at the same steps
        record = trainer.record(loss.item(), monitor, self.images / elapsed, self.waited / elapsed)
        self.tick, self.images, self.waited = time.perf_counter(), 0, 0.0
        if trainer.probe_due():
            record.update(trainer.probes.measure(trainer.teacher.backbone))
            self.progress.update(self.task, quality=quality_line(record))
            verdict, evidence = quality_verdict([record], after_step=trainer.settled_step)
            if trainer.recipe.train.stop_when_not_learning and verdict == NOT_LEARNING:
                trainer.console.print(f"[bold yellow]Stopping early (train.stop_when_not_learning):[/] {evidence}")
                trainer.hopeless = True
        if self.log:
            self.log.write(record)
        self.first_loss = record["loss"] if self.first_loss is None else self.first_loss
        for kind, warning in (("collapse", is_collapsing(record)), ("forgetting", is_forgetting(record, self.first_loss))):
            if warning and kind not in self.warned:
                trainer.console.print(f"[bold yellow]warning:[/] {warning}")
                self.warned.add(kind)
        self.progress.update(self.task, loss=record["loss"], lr=record["lr"], mom=record["momentum"],
                             ips=record["img_per_s"], wait=record["data_wait"])
