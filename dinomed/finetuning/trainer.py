"""Fine-tuning loop: grouped splits -> labelled subset -> backbone + head -> early stopping -> test once.

Labelled images are augmented with the modality preset's paired transform (:mod:`dinomed.augment.paired`: one
geometric draw moves image and mask / depth together; ``finetune.augment: false`` for the eval transform only);
augmentation seeds and the data order depend only on (seed, epoch, item), so a resumed run repeats them.

Model selection and early stopping use only the validation split; the test split is evaluated once, at the
end, with the best checkpoint. ``checkpoints/last.pt`` holds what resuming needs (trainable weights,
optimiser, scaler, epoch, best score, RNG) and is written atomically; ``checkpoints/best.pt`` the best weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from dinomed.augment.backend import worker_init
from dinomed.augment.multicrop import build_eval_transform
from dinomed.augment.paired import PairedTransform, build_paired_transform
from dinomed.config import to_dict
from dinomed.data.datasets import build_dataset, describe_source
from dinomed.data.records import ImageDataset, SubsetDataset
from dinomed.data.sampler import EpochSampler
from dinomed.data.splits import SPLITS_FILE, Splits, splits_for
from dinomed.engine import METRICS_FILE, Engine, StopRequest, TrainingDiverged, load_checkpoint, progress_bar
from dinomed.files import write_json
from dinomed.finetuning.heads import build_head, head_class
from dinomed.finetuning.model import MODEL_DIR, FinetunedModel, adapt, describe_parameters, parameter_report, save_model
from dinomed.models.backbones import feature_levels, resolve_backbone
from dinomed.models.lora import LoraSettings
from dinomed.recipe import Recipe
from dinomed.seeding import item_seed, rng_state, set_rng_state
from dinomed.ssl.optim import adamw

LAST, BEST = "checkpoints/last.pt", "checkpoints/best.pt"
FINAL_METRICS = "metrics.json"
DIVERGED_HINT = "Lower finetune.lr."


class TaskView(SubsetDataset):
    """All items of a dataset, with ``labels()`` saying who carries the task's target (for the labelled subset)."""

    def __init__(self, parent: ImageDataset, target: str) -> None:
        super().__init__(parent, range(len(parent)))
        self.target = target

    def labels(self) -> list[int | None]:
        if self.target == "label":
            return self.parent.labels()
        return [0 if getattr(r, self.target) is not None else None for r in self.records]


class TaskSamples(Dataset):
    """Transformed (image, target) pairs of the items ``indices`` of ``dataset``.

    With ``augment`` (a :class:`~dinomed.augment.paired.PairedTransform`) every item gets new geometry and
    photometry each epoch (:meth:`set_epoch`), the mask / depth moved with the image; else the eval ``transform``.
    """

    def __init__(self, dataset: ImageDataset, indices: list[int], transform: Any, target: str, *,
                 augment: PairedTransform | None = None, seed: int = 0) -> None:
        self.dataset, self.indices, self.transform, self.target = dataset, indices, transform, target
        self.augment, self.seed, self.epoch = augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset[self.indices[i]]
        targets = {} if self.target == "label" else {self.target: sample[self.target]}
        if self.augment is None:
            out = self.transform(sample["image"], **targets)
        else:
            out = self.augment(sample["image"], item_seed(self.seed, self.epoch, i), **targets)
        return out["image"], torch.tensor(sample["label"]) if self.target == "label" else out[self.target]


def input_signature(dataset: ImageDataset) -> dict[str, Any]:
    """Channels and bit depth of the training files, which prediction inputs must match."""
    sample = dataset[0]
    meta = sample.get("meta", {})
    bits = meta.get("bit_depth") or {"uint8": 8, "uint16": 16}.get(str(meta.get("original_dtype")))
    return {"channels": int(sample["image"].shape[-1]), "bit_depth": bits}


class FinetuneTrainer:
    """One fine-tuning run from a resolved recipe (``recipe.finetune`` + ``recipe.data``)."""

    def __init__(self, recipe: Recipe, run_dir: Path, *, console: Console | None = None,
                 splits: Splits | None = None) -> None:
        self.recipe, self.run_dir, self.cfg = recipe, run_dir, recipe.finetune
        cfg, data, train = self.cfg, recipe.data, recipe.train
        self.engine = Engine(device=train.device, precision=train.precision, num_threads=train.num_threads,
                             seed=cfg.seed, loggers=train.loggers, console=console)
        self.console, self.device = self.engine.console, self.engine.device
        self.head_cls = head_class(cfg.task)
        target = self.head_cls.target
        dataset = build_dataset(data, recipe.modality)
        self.console.print(describe_source(data, recipe.modality, len(dataset)), highlight=False)
        if not dataset.has(target):
            raise ValueError(f"task '{cfg.task}' needs a {target} for every image, but the dataset "
                             f"({data.source}: {data.manifest or data.root or recipe.modality + ' phantom'}) "
                             f"{'has none' if not any(getattr(r, target) is not None for r in dataset.records) else 'lacks some'}")
        self.splits = self._splits(dataset, target, splits)
        transform = build_eval_transform(recipe.modality, cfg.image_size, data.channels)
        augment = build_paired_transform(recipe.modality, recipe.augment, cfg.image_size, data.channels) if cfg.augment else None
        # the labelled order of epoch e is a pure function of (seed, e), so a run stopped mid-epoch resumes exactly
        self.sampler = EpochSampler(max(1, len(self.splits.labelled)), seed=cfg.seed)
        self.loaders = {
            name: DataLoader(TaskSamples(dataset, indices, transform, target, augment=augment if name == "labelled" else None,
                                         seed=cfg.seed), batch_size=cfg.batch_size,
                             sampler=self.sampler if name == "labelled" else None,
                             drop_last=name == "labelled" and len(indices) > cfg.batch_size,
                             generator=torch.Generator().manual_seed(cfg.seed),  # worker seeds: not from the global RNG
                             **self.engine.loader_options(data.num_workers, init=worker_init))
            for name, indices in (("labelled", self.splits.labelled), ("val", self.splits.val), ("test", self.splits.test))
        }
        if not self.splits.val:
            raise ValueError("the validation split is empty: set data.val_fraction > 0 (early stopping needs it)")
        self.model, self.base, self.spec = self._build(dataset, target)
        self.model.to(self.device)
        self.loss_fn = self.head_cls.loss(cfg)
        self.optimization = self.engine.optimization(self._optimizer())
        self.total_steps = cfg.epochs * len(self.loaders["labelled"])
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimization.optimizer, max(1, self.total_steps))
        self.epoch, self.step, self.best, self.bad_epochs = 0, 0, None, 0
        self.epoch_losses: list[float] = []  # losses of the current epoch's batches so far
        self.deadline: float | None = None  # set by fit() from finetune.max_minutes

    # ------------------------------------------------------------------------------------------- build
    def _splits(self, dataset: ImageDataset, target: str, given: Splits | None) -> Splits:
        """``given`` (e.g. a cross-validation fold from dinomed.tuning.objective), else the saved or the recipe's splits."""
        saved = self.run_dir / SPLITS_FILE
        view = TaskView(dataset, target)
        if given is not None:
            splits = given
        else:
            splits = Splits.load(saved, view) if saved.is_file() else splits_for(view, self.recipe.data)
        splits.save(saved)
        self.console.print(splits.describe())
        return splits

    def _build(self, dataset: ImageDataset, target: str) -> tuple[FinetunedModel, torch.nn.Module, Any]:
        cfg = self.cfg
        base, spec = resolve_backbone(cfg.backbone, arch=cfg.arch or (None if cfg.backbone != "random" else self.recipe.model.arch),
                                      in_chans=self.recipe.data.channels, img_size=cfg.image_size)
        num_classes = cfg.num_classes or self.head_cls.infer_classes(dataset, self.splits.labelled)
        head_kwargs = self.head_cls.options(cfg, num_classes, self.recipe.data.channels)
        head = build_head(cfg.task, feature_levels(base), blocks=cfg.blocks, **head_kwargs)
        keep = {k: v.clone() for k, v in base.state_dict().items()} if cfg.mode != "full" else None
        lora = LoraSettings(tuple(cfg.lora_targets), cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        backbone = adapt(base, cfg.mode, lora)
        info = {"task": cfg.task, "mode": cfg.mode, "head": {"blocks": head.blocks, **head_kwargs},
                "modality": self.recipe.modality, "image_size": cfg.image_size, "channels": self.recipe.data.channels,
                "input": input_signature(dataset), "class_names": dataset.class_names,
                "backbone_source": spec.meta.get("source"), "data": to_dict(self.recipe.data)}
        model = FinetunedModel(backbone, head, info)
        self.console.print(f"Mode [bold]{cfg.mode}[/]. " + describe_parameters(parameter_report(model)))
        plain = None
        if keep is not None:
            import timm

            plain = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
            plain.load_state_dict(keep)
        return model, plain, spec

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        backbone_lr = cfg.backbone_lr if cfg.mode == "full" else cfg.lr
        groups = [{"params": head, "lr": cfg.lr}] + ([{"params": backbone, "lr": backbone_lr}] if backbone else [])
        return adamw(groups, self.device, weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------------------------------- state
    def _weights(self) -> dict[str, torch.Tensor]:
        """Trainable weights plus the head's buffers (BatchNorm statistics): all that changes in training."""
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()
                if k in trainable or k.startswith("head.")}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self._weights(), **self.optimization.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "epoch_losses": self.epoch_losses,
                "step": self.step, "best": self.best, "bad_epochs": self.bad_epochs, "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"], strict=False)
        self.optimization.load_state_dict(state)
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.best, self.bad_epochs = state["epoch"], state["step"], state["best"], state["bad_epochs"]
        self.epoch_losses = list(state.get("epoch_losses", []))
        set_rng_state(state["rng"])

    # -------------------------------------------------------------------------------------------- loop
    def _shaped(self, targets: torch.Tensor) -> torch.Tensor:
        """Depth maps get the channel axis the depth head outputs (B, 1, H, W)."""
        return targets[:, None] if self.cfg.task == "depth" else targets

    def train_epoch(self, progress: Progress, task: Any, stop: StopRequest) -> float | None:
        """Train (the rest of) epoch ``self.epoch``; its mean loss, or ``None`` when ``stop`` interrupted it
        (``self.epoch_losses`` then holds the batches done, which a resumed run skips)."""
        self.model.train()
        if self.cfg.mode == "frozen":
            self.model.vit.eval()
        losses, loader = self.epoch_losses, self.loaders["labelled"]
        loader.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, skip=len(losses) * self.cfg.batch_size)
        for images, targets in loader:
            if self.step >= self.total_steps or (losses and self.out_of_time()):
                break
            images, targets = images.to(self.device), self._shaped(targets.to(self.device))
            with self.engine.autocast():
                output = self.model(images)
            loss = self.loss_fn(output.float(), targets)  # losses in fp32 whatever the autocast dtype
            try:
                self.optimization.step(loss, where=f"step {self.step}")
            except TrainingDiverged as err:
                raise err.at(self.run_dir / LAST, DIVERGED_HINT) from None
            self.scheduler.step()
            self.step += 1
            losses.append(loss.item())
            progress.update(task, completed=self.step, loss=losses[-1])
            if stop.requested:
                return None
        self.epoch_losses = []
        return float(np.mean(losses)) if losses else float("nan")

    def out_of_time(self) -> bool:
        """Whether this process's ``finetune.max_minutes`` of training are used up (equal-time comparisons)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics of the task on ``split`` ('val' or 'test')."""
        self.model.eval()
        cfg = self.cfg
        metrics = self.head_cls.metrics(cfg, self.model.info["head"].get("num_classes"))
        for images, targets in self.loaders[split]:
            with self.engine.autocast():
                out = self.model(images.to(self.device))
            metrics.update(out.float().cpu(), self._shaped(targets))
        return metrics.compute()

    def fit(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> StopRequest:
        """Train with early stopping on the validation split's primary metric.

        Validation (and the checkpoint) follows every ``finetune.val_every``-th epoch and the last one;
        ``on_epoch(epoch, val_metrics)`` runs after each validation (Optuna reports and prunes there). Ctrl-C or
        SIGTERM saves the state after the current step and returns; the returned request says whether that
        happened.
        """
        cfg = self.cfg
        self.deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
        log = self.engine.metrics_log(self.run_dir / METRICS_FILE, resume_step=self.step,
                                      loggers=self.recipe.train.loggers, prefix="finetune")
        primary = self.head_cls.primary_metric
        progress = progress_bar(f"finetune {cfg.task}/{cfg.mode}", self.console,
                                fields="loss {task.fields[loss]:.4f}  val {task.fields[val]}")
        with StopRequest().installed() as stop, progress:
            task = progress.add_task("finetune", total=self.total_steps, completed=self.step, loss=float("nan"), val="-")
            finished = self._finished()
            while not finished:
                tick = time.perf_counter()
                loss = self.train_epoch(progress, task, stop)
                if loss is None:
                    break
                self.epoch += 1
                record = {"step": self.step, "epoch": self.epoch, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
                # decided once per epoch: a deadline passing later cannot end the run on an unvalidated epoch
                finished, val = self._finished(), None
                if self.epoch % cfg.val_every == 0 or finished:
                    val = self.evaluate("val")
                    if self.head_cls.is_better(val[primary], self.best):
                        self.best, self.bad_epochs = val[primary], 0
                        self.engine.save({"weights": self._weights(), "epoch": self.epoch}, self.run_dir / BEST)
                    else:
                        self.bad_epochs += cfg.val_every
                    record.update({f"val_{k}": v for k, v in val.items()})
                    progress.update(task, val=f"{primary} {val[primary]:.4f}")
                    self.engine.save(self.state_dict(), self.run_dir / LAST)
                    finished = self._finished()  # patience may be used up now
                record["epoch_s"] = time.perf_counter() - tick
                if log:
                    log.write(record)
                if val is not None and on_epoch is not None:
                    on_epoch(self.epoch, val)
                finished = finished or stop.requested
        if log:
            log.close()
        if stop.requested:
            self.engine.save(self.state_dict(), self.run_dir / LAST)
        elif self.bad_epochs >= cfg.patience:
            self.console.print(f"Early stop after epoch {self.epoch}: no {primary} improvement for {cfg.patience} epochs.")
        return stop

    def _finished(self) -> bool:
        """Whether training stops here: epochs, steps, patience or time used up; never before the first epoch,
        since :meth:`finish` needs its ``best.pt``."""
        cfg = self.cfg
        return self.epoch > 0 and (self.epoch >= cfg.epochs or self.step >= self.total_steps
                                   or self.bad_epochs >= cfg.patience or self.out_of_time())

    def finish(self) -> dict[str, Any]:
        """Load the best weights, evaluate the test split once, save the model and ``metrics.json``."""
        best = load_checkpoint(self.run_dir / BEST, map_location=self.device)
        self.model.load_state_dict(best["weights"], strict=False)
        metrics = {"task": self.cfg.task, "mode": self.cfg.mode, "best_epoch": best["epoch"], "epochs": self.epoch,
                   "steps": self.step, "val": self.evaluate("val"),
                   "test": self.evaluate("test") if self.splits.test else None,
                   "labelled": len(self.splits.labelled), "parameters": parameter_report(self.model)}
        self.model.cpu()
        save_model(self.model, self.spec, self.run_dir / MODEL_DIR, base=self.base)
        write_json(self.run_dir / FINAL_METRICS, metrics)
        return metrics
