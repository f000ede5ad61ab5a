"""kNN and linear-probe evaluation of a frozen backbone on a recipe's data, over grouped train/val/test splits.

This is what ``dinomed.evaluate`` and ``dinomed eval knn|linear`` run: resolve the backbone (an exported file, a
run directory, a module, or ``"random"`` for the random-init baseline of the recipe's architecture), build the
recipe's dataset and grouped splits (no patient / sequence in two splits), read the cached features, then
classify. kNN uses the train split as its memory bank; the linear probe picks its learning rate on val. Both score
val and test.

Example:
    >>> result = dinomed.evaluate(backbone="runs/oct-1", method="knn")
    >>> result.metrics["test"]["balanced_accuracy"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from dinomed.data.records import ImageDataset
from dinomed.engine import CONFIG_FILE, resolve_device
from dinomed.eval.config import EvalConfig
from dinomed.eval.features import Features, Transform, cached_features
from dinomed.eval.knn import effective_k, knn_classify
from dinomed.eval.linear import linear_probe
from dinomed.eval.metrics import classification_metrics
from dinomed.files import write_json
from dinomed.models.backbones import RANDOM, resolve_backbone
from dinomed.recipe import Recipe

METHODS = ("knn", "linear")
SPLITS = ("train", "val", "test")


@dataclass
class EvalResult:
    """Scores per evaluated split (``val``, ``test``) with the settings that produced them.

    ``backbone`` is the evaluated module (left out of :meth:`to_dict`); ``backbone_source`` says what it is.
    """

    method: str
    backbone_source: str
    recipe: str
    class_names: list[str]
    split_sizes: dict[str, int]
    metrics: dict[str, dict[str, Any]]
    params: dict[str, Any]
    cache_file: str = ""
    cached: bool = False
    backbone: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "backbone"}

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())


def eval_backbone(backbone: str | Path | nn.Module, recipe: Recipe) -> tuple[nn.Module, str]:
    """``(model, label)`` for evaluation: a module as given, else :func:`~dinomed.models.backbones.resolve_backbone`
    (run dir, export, timm/DINO/DINOv2 checkpoint) at the recipe's channels and crop size. ``"random"`` builds the
    recipe's architecture with seed ``train.seed``: the baseline every pretrained number should beat."""
    if isinstance(backbone, nn.Module):
        return backbone, type(backbone).__name__
    is_random = str(backbone) == RANDOM
    if is_random:
        torch.manual_seed(recipe.train.seed)
    model, _ = resolve_backbone(
        str(backbone),
        arch=recipe.model.arch if is_random else None,
        in_chans=recipe.data.channels,
        img_size=recipe.augment.global_size,
    )
    label = f"random init {recipe.model.arch} (seed {recipe.train.seed})" if is_random else str(backbone)
    return model, label


def _split_indices(dataset: ImageDataset, recipe: Recipe) -> dict[str, list[int]]:
    from dinomed.data.splits import splits_for

    return dict(splits_for(dataset, recipe.data))


def evaluate_features(
    features: Features,
    splits: Mapping[str, Sequence[int]],
    class_names: list[str],
    method: str,
    config: EvalConfig,
    *,
    seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(metrics per split, params)`` for ``method`` on already extracted features."""
    if method not in METHODS:
        raise ValueError(f"unknown evaluation method '{method}'; valid methods are {list(METHODS)}")
    parts = {name: features.select(splits.get(name, [])) for name in SPLITS}
    if (parts["train"].labels < 0).any():
        raise ValueError("the train split has unlabelled images; kNN and the linear probe need a label per image")
    scored = [name for name in ("val", "test") if len(parts[name].labels)]
    if not scored:
        raise ValueError("both the val and the test split are empty: nothing to evaluate on")
    num_classes = len(class_names)
    if method == "knn":
        k = effective_k(config.knn_k, len(parts["train"].labels))
        train_x = parts["train"].vectors(False)
        predictions = {
            name: knn_classify(train_x, parts["train"].labels, parts[name].vectors(False), k=k,
                               T=config.knn_temperature, num_classes=num_classes)
            for name in scored
        }
        params: dict[str, Any] = {"k": k, "k_requested": config.knn_k, "temperature": config.knn_temperature, "features": "cls"}
    else:
        pool = config.avgpool_patches
        sets = {name: (parts[name].vectors(pool), parts[name].labels) for name in SPLITS}
        probe = linear_probe(
            sets["train"], sets["val"], sets["test"], num_classes, lrs=config.linear_lrs,
            epochs=config.linear_epochs, batch_size=config.linear_batch_size,
            weight_decay=config.linear_weight_decay, seed=seed,
        )
        predictions = {"val": probe.val_predictions, "test": probe.test_predictions}
        params = {"best_lr": probe.best_lr, "lr_sweep_val_balanced_accuracy": {str(k): v for k, v in probe.sweep.items()},
                  "epochs": config.linear_epochs, "features": "cls+avgpool" if pool else "cls"}
    metrics = {
        name: classification_metrics(predictions[name], parts[name].labels, class_names)
        for name in scored
    }
    return metrics, params


def evaluate_backbone(
    recipe: Recipe,
    backbone: str | Path | nn.Module,
    method: str = "knn",
    *,
    dataset: ImageDataset | None = None,
    splits: Mapping[str, Sequence[int]] | None = None,
    transform: Transform | None = None,
    out: str | Path | None = None,
    console: Console | None = None,
) -> EvalResult:
    """kNN (``method="knn"``) or linear probe (``"linear"``) of ``backbone`` on the (resolved) recipe's data.

    ``dataset``/``splits``/``transform`` default to the recipe's dataset, its grouped splits and the modality's
    eval transform at ``augment.global_size``. The result is written to ``out`` when given, else to
    ``<run_dir>/eval/<method>.json`` when the backbone is a run directory (where ``dinomed report`` finds it).
    """
    if method not in METHODS:
        raise ValueError(f"unknown evaluation method '{method}'; valid methods are {list(METHODS)}")
    model, label = eval_backbone(backbone, recipe)
    if dataset is None:
        from dinomed.data.datasets import build_dataset

        dataset = build_dataset(recipe.data, recipe.modality)
    if not dataset.class_names:
        raise ValueError(f"the {recipe.name} dataset has no class labels; kNN / linear evaluation needs labels")
    splits = splits if splits is not None else _split_indices(dataset, recipe)
    if transform is None:
        from dinomed.augment.multicrop import build_eval_transform

        transform = build_eval_transform(recipe.modality, recipe.augment.global_size, recipe.data.channels)
    cfg = recipe.eval
    feats, cache_file, was_cached = cached_features(
        model, dataset, transform, cache_dir=cfg.cache_dir, batch_size=cfg.batch_size,
        device=resolve_device(recipe.train.device), num_workers=recipe.data.num_workers, console=console,
    )
    metrics, params = evaluate_features(feats, splits, list(dataset.class_names), method, cfg, seed=recipe.train.seed)
    result = EvalResult(
        method=method, backbone_source=label, recipe=recipe.name, class_names=list(dataset.class_names),
        split_sizes={name: len(splits.get(name, [])) for name in SPLITS}, metrics=metrics, params=params,
        cache_file=str(cache_file or ""), cached=was_cached, backbone=model,
    )
    target = out if out is not None else _run_eval_file(backbone, method)
    if target is not None:
        result.save(target)
    return result


def _run_eval_file(backbone: str | Path | nn.Module, method: str) -> Path | None:
    if isinstance(backbone, nn.Module) or str(backbone) == RANDOM:
        return None
    run_dir = Path(backbone)
    return run_dir / "eval" / f"{method}.json" if (run_dir / CONFIG_FILE).is_file() else None
