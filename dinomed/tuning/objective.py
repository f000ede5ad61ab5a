"""The tuning objective: grouped k-fold cross-validation inside the labelled subset, reported per epoch for pruning.

With 20 labels a 5-image validation split makes hyper-parameter choice noise, so every trial trains ``k`` times,
each fold holding out whole patients / sequences of the *labelled* subset (never the val or test split), and
scores the mean of the folds' best validation metric. The test split is not touched during the search.

Intermediate values go fold after fold: at step ``fold * max_epochs + epoch`` the trial reports the running CV
estimate, the mean over the finished folds' best scores and the current fold's best so far. Trials are then
compared at equal (fold, epoch), which is what Optuna's median / Hyperband pruners need.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from rich.console import Console

from dinomed.data.datasets import build_dataset
from dinomed.data.splits import Splits, grouped_folds, splits_for
from dinomed.engine import Stopped
from dinomed.finetuning.heads import head_class
from dinomed.finetuning.trainer import FinetuneTrainer, TaskView
from dinomed.recipe import Recipe
from dinomed.tuning.config import IntRange
from dinomed.tuning.space import active_space, apply_params, suggest

TRIALS_DIR = "trials"


def search_splits(recipe: Recipe) -> Splits:
    """The recipe's grouped train/val/test split and labelled subset, exactly as fine-tuning makes them."""
    dataset = build_dataset(recipe.data, recipe.modality)
    return splits_for(TaskView(dataset, head_class(recipe.finetune.task).target), recipe.data)


def fold_splits(splits: Splits, k: int, seed: int) -> list[Splits]:
    """``k`` train/val splits of the labelled subset, whole groups per fold; test and val stay empty of others."""
    labelled = splits.labelled
    fold_of = grouped_folds([splits.groups[i] for i in labelled], k, seed)
    folds = []
    for f in range(k):
        val = [i for i, g in zip(labelled, fold_of) if g == f]
        train = [i for i, g in zip(labelled, fold_of) if g != f]
        folds.append(Splits(train=train, val=val, test=[], labelled=train, paths=splits.paths, groups=splits.groups,
                            params={**splits.params, "fold": f, "folds": k, "fold_seed": seed}))
    return folds


@dataclass
class CrossValidation:
    """Optuna objective: ``study.optimize(CrossValidation(recipe, splits, run_dir), ...)``."""

    recipe: Recipe
    splits: Splits
    run_dir: Path
    quiet: bool = True

    def __post_init__(self) -> None:
        self.head = head_class(self.recipe.finetune.task)
        self.metric = self.head.primary_metric
        self.space = active_space(self.recipe)
        self.folds = fold_splits(self.splits, self.recipe.tune.folds, self.recipe.tune.seed)
        epochs = self.space.get("epochs")
        self.max_epochs = epochs.high if isinstance(epochs, IntRange) else self.recipe.finetune.epochs

    @property
    def direction(self) -> str:
        return "maximize" if self.head.higher_is_better else "minimize"

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.space)
        recipe = apply_params(self.recipe, params)
        best: list[float] = []
        try:
            for f, fold in enumerate(self.folds):
                best.append(self._fold(trial, recipe, f, fold, best))
        except optuna.TrialPruned:
            raise
        except Exception as err:  # recorded with the trial; the study's catch= decides whether it goes on
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            raise
        trial.set_user_attr("fold_scores", best)
        value = float(np.mean(best))
        if not math.isfinite(value):
            reason = f"validation {self.metric} is {value} in folds {best}"
            trial.set_user_attr("fail_reason", reason)
            raise FloatingPointError(reason)
        return value

    def _fold(self, trial: optuna.Trial, recipe: Recipe, f: int, fold: Splits, done: list[float]) -> float:
        fold_dir = self.run_dir / TRIALS_DIR / f"{trial.number:04d}" / f"fold{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        trainer = FinetuneTrainer(recipe, fold_dir, console=Console(quiet=self.quiet), splits=fold)
        seen: list[float | None] = [None]

        def report(epoch: int, val: dict[str, float]) -> None:
            if self.head.is_better(val[self.metric], seen[0]):
                seen[0] = val[self.metric]
            if seen[0] is None:
                return
            trial.report(float(np.mean([*done, seen[0]])), f * self.max_epochs + epoch - 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at fold {f}, epoch {epoch}")

        try:
            stop = trainer.fit(on_epoch=report)
            if stop.requested:  # Ctrl-C / SIGTERM inside a trial ends the study (saved as far as it went)
                raise Stopped(stop.exit_code)
        finally:
            shutil.rmtree(fold_dir / "checkpoints", ignore_errors=True)  # per-fold weights are not reused
        return float("nan") if trainer.best is None else float(trainer.best)

