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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from dinomed.augment.multicrop import build_eval_transform
from dinomed.augment.paired import PairedTransform, build_paired_transform
from dinomed.config import to_dict
from dinomed.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dinomed.data.datasets import build_dataset
from dinomed.data.records import ImageDataset, SubsetDataset
from dinomed.data.splits import Splits, splits_for
from dinomed.finetune.losses import build_loss
from dinomed.finetune.metrics import PRIMARY, build_metrics, is_better
from dinomed.finetune.model import MODEL_DIR, FinetunedModel, adapt, parameter_counts, save_model
from dinomed.models.backbones import resolve_backbone
from dinomed.models.heads import HEADS, build_head
from dinomed.models.lora import LoraSettings
from dinomed.recipe import Recipe
from dinomed.runs import METRICS_FILE, MetricsLog, write_json
from dinomed.ssl.optim import adamw
from dinomed.ssl.trainer import resolve_device

LAST, BEST = "checkpoints/last.pt", "checkpoints/best.pt"
SPLITS_FILE, FINAL_METRICS = "splits.json", "metrics.json"


@dataclass
class FinetuneResult:
    """What :func:`~dinomed.finetune.api.finetune` returns."""

    run_dir: Path
    metrics: dict[str, Any]
    model: FinetunedModel


class TaskView(SubsetDataset):
    """All items of a dataset, with ``labels()`` saying who carries the task's target (for the labelled subset)."""

    def __init__(self, parent: ImageDataset, target: str) -> None:
        super().__init__(parent, range(len(parent)))
        self.target = target

    def labels(self) -> list[int | None]:
        if self.target == "label":
            return self.parent.labels()
        return [0 if getattr(r, self.target) is not None else None for r in self.records]


def epoch_seed(seed: int, epoch: int, index: int = 0) -> int:
    """A seed that depends only on (run seed, epoch, item): augmentation and data order survive a resume."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


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
            out = self.augment(sample["image"], epoch_seed(self.seed, self.epoch, i), **targets)
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
        self.console = console or Console()
        cfg, data = self.cfg, recipe.data
        torch.manual_seed(cfg.seed)
        if recipe.train.num_threads:
            torch.set_num_threads(recipe.train.num_threads)
        self.device = resolve_device(recipe.train.device)
        self.amp = recipe.train.amp and self.device.type == "cuda"
        target = HEADS[cfg.task].target
        dataset = build_dataset(data, recipe.modality)
        if not dataset.has(target):
            raise ValueError(f"task '{cfg.task}' needs a {target} for every image, but the dataset "
                             f"({data.source}: {data.manifest or data.root or recipe.modality + ' phantom'}) "
                             f"{'has none' if not any(getattr(r, target) is not None for r in dataset.records) else 'lacks some'}")
        self.splits = self._splits(dataset, target, splits)
        transform = build_eval_transform(recipe.modality, cfg.image_size, data.channels)
        augment = build_paired_transform(recipe.modality, recipe.augment, cfg.image_size, data.channels) if cfg.augment else None
        self.loaders = {
            name: DataLoader(TaskSamples(dataset, indices, transform, target, augment=augment if name == "labelled" else None,
                                         seed=cfg.seed), batch_size=cfg.batch_size,
                             shuffle=name == "labelled", drop_last=name == "labelled" and len(indices) > cfg.batch_size,
                             num_workers=data.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
            for name, indices in (("labelled", self.splits.labelled), ("val", self.splits.val), ("test", self.splits.test))
        }
        if not self.splits.val:
            raise ValueError("the validation split is empty: set data.val_fraction > 0 (early stopping needs it)")
        self.model, self.base, self.spec = self._build(dataset, target)
        self.model.to(self.device)
        self.loss_fn = build_loss(cfg.task, min_depth=cfg.min_depth, max_depth=cfg.max_depth,
                                  gradient_weight=cfg.gradient_weight)
        self.optimizer = self._optimizer()
        self.total_steps = cfg.epochs * len(self.loaders["labelled"])
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max(1, self.total_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.step, self.best, self.bad_epochs = 0, 0, None, 0
        self.deadline: float | None = None  # set by fit() from finetune.max_minutes

    # ------------------------------------------------------------------------------------------- build
    def _splits(self, dataset: ImageDataset, target: str, given: Splits | None) -> Splits:
        """``given`` (e.g. a cross-validation fold from dinomed.tune), else the saved or the recipe's splits."""
        saved = self.run_dir / SPLITS_FILE
        view = TaskView(dataset, target)
        if given is not None:
            splits = given
        else:
            splits = Splits.load(saved, view) if saved.is_file() else splits_for(view, self.recipe.data)
        splits.save(saved)
        self.console.print(f"Splits (grouped): train {len(splits.train)} (labelled {len(splits.labelled)}), "
                           f"val {len(splits.val)}, test {len(splits.test)} images.")
        return splits

    def _num_classes(self, dataset: ImageDataset) -> int:
        if self.cfg.num_classes:
            return self.cfg.num_classes
        if self.cfg.task == "cls":
            return len(dataset.class_names or []) or int(max(dataset.labels())) + 1
        seen = max(int(np.max(dataset[i]["mask"])) for i in self.splits.labelled[:16])
        return max(2, seen + 1)

    def _build(self, dataset: ImageDataset, target: str) -> tuple[FinetunedModel, torch.nn.Module, Any]:
        cfg = self.cfg
        base, spec = resolve_backbone(cfg.backbone, arch=cfg.arch or (None if cfg.backbone != "random" else self.recipe.model.arch),
                                      in_chans=self.recipe.data.channels, img_size=cfg.image_size)
        head_kwargs: dict[str, Any] = {}
        if cfg.task == "depth":
            head_kwargs = {"bins": cfg.depth_bins, "min_depth": cfg.min_depth, "max_depth": cfg.max_depth}
        else:
            head_kwargs = {"num_classes": self._num_classes(dataset)}
        if cfg.task != "cls":  # the classification head is linear: no width
            head_kwargs["hidden"] = cfg.head_hidden
        head = build_head(cfg.task, base.embed_dim, len(base.blocks), blocks=cfg.blocks, **head_kwargs)
        keep = {k: v.clone() for k, v in base.state_dict().items()} if cfg.mode != "full" else None
        lora = LoraSettings(tuple(cfg.lora_targets), cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        backbone = adapt(base, cfg.mode, lora)
        info = {"task": cfg.task, "mode": cfg.mode, "head": {"blocks": head.blocks, **head_kwargs},
                "modality": self.recipe.modality, "image_size": cfg.image_size, "channels": self.recipe.data.channels,
                "input": input_signature(dataset), "class_names": dataset.class_names,
                "backbone_source": spec.meta.get("source"), "data": to_dict(self.recipe.data)}
        model = FinetunedModel(backbone, head, info)
        trainable, total = parameter_counts(model)
        self.console.print(f"Mode [bold]{cfg.mode}[/]: trainable parameters [bold]{trainable:,}[/] of {total:,} "
                           f"({100 * trainable / total:.2f} %).")
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
        return {"weights": self._weights(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
                "step": self.step, "best": self.best, "bad_epochs": self.bad_epochs, "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best, self.bad_epochs = state["epoch"], state["step"], state["best"], state["bad_epochs"]
        set_rng_state(state["rng"])

    # -------------------------------------------------------------------------------------------- loop
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _shaped(self, targets: torch.Tensor) -> torch.Tensor:
        """Depth maps get the channel axis the depth head outputs (B, 1, H, W)."""
        return targets[:, None] if self.cfg.task == "depth" else targets

    def train_epoch(self, progress: Progress, task: Any) -> float:
        self.model.train()
        if self.cfg.mode == "frozen":
            self.model.vit.eval()
        losses, loader = [], self.loaders["labelled"]
        loader.dataset.set_epoch(self.epoch)
        loader.generator.manual_seed(epoch_seed(self.cfg.seed, self.epoch))  # the order of epoch e, resumed or not
        for images, targets in loader:
            if self.step >= self.total_steps or (losses and self.out_of_time()):
                break
            images, targets = images.to(self.device), self._shaped(targets.to(self.device))
            with self._autocast():
                loss = self.loss_fn(self.model(images), targets)
            if not torch.isfinite(loss):
                raise RuntimeError(f"fine-tuning diverged: loss {loss.item()} at step {self.step}; lower finetune.lr")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            losses.append(loss.item())
            progress.update(task, completed=self.step, loss=losses[-1])
        return float(np.mean(losses)) if losses else float("nan")

    def out_of_time(self) -> bool:
        """Whether this process's ``finetune.max_minutes`` of training are used up (equal-time comparisons)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics of the task on ``split`` ('val' or 'test')."""
        self.model.eval()
        cfg = self.cfg
        metrics = build_metrics(cfg.task, num_classes=self.model.info["head"].get("num_classes", 2),
                                min_depth=cfg.min_depth, max_depth=cfg.max_depth)
        for images, targets in self.loaders[split]:
            with self._autocast():
                out = self.model(images.to(self.device))
            metrics.update(out.float().cpu(), self._shaped(targets))
        return metrics.compute()

    def fit(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
        """Train with early stopping on the validation split's primary metric.

        Validation (and the checkpoint) follows every ``finetune.val_every``-th epoch and the last one;
        ``on_epoch(epoch, val_metrics)`` runs after each validation (Optuna reports and prunes there).
        """
        cfg, history = self.cfg, []
        self.deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
        log = MetricsLog(self.run_dir / METRICS_FILE, resume_step=self.step)
        primary = PRIMARY[cfg.task][0]
        progress = Progress(TextColumn(f"[bold]finetune {cfg.task}/{cfg.mode}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}"), TimeRemainingColumn(),
                            console=self.console)
        with progress:
            task = progress.add_task("finetune", total=self.total_steps, completed=self.step, loss=float("nan"), val="-")
            finished = self._finished()
            while not finished:
                tick = time.perf_counter()
                loss = self.train_epoch(progress, task)
                self.epoch += 1
                record = {"step": self.step, "epoch": self.epoch, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
                # decided once per epoch: a deadline passing later cannot end the run on an unvalidated epoch
                finished, val = self._finished(), None
                if self.epoch % cfg.val_every == 0 or finished:
                    val = self.evaluate("val")
                    if is_better(cfg.task, val[primary], self.best):
                        self.best, self.bad_epochs = val[primary], 0
                        save_checkpoint({"weights": self._weights(), "epoch": self.epoch}, self.run_dir / BEST)
                    else:
                        self.bad_epochs += cfg.val_every
                    record.update({f"val_{k}": v for k, v in val.items()})
                    progress.update(task, val=f"{primary} {val[primary]:.4f}")
                    save_checkpoint(self.state_dict(), self.run_dir / LAST)
                    finished = self._finished()  # patience may be used up now
                record["epoch_s"] = time.perf_counter() - tick
                log.write(record)
                history.append(record)
                if val is not None and on_epoch is not None:
                    on_epoch(self.epoch, val)
        if self.bad_epochs >= cfg.patience:
            self.console.print(f"Early stop after epoch {self.epoch}: no {primary} improvement for {cfg.patience} epochs.")
        return history

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
                   "labelled": len(self.splits.labelled), "parameters": dict(zip(("trainable", "total"),
                                                                                 parameter_counts(self.model)))}
        self.model.cpu()
        save_model(self.model, self.spec, self.run_dir / MODEL_DIR, base=self.base)
        write_json(self.run_dir / FINAL_METRICS, metrics)
        return metrics
