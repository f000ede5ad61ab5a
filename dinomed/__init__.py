"""dinomed: DINO self-supervised pretraining and LoRA fine-tuning of ViTs for OCT, endoscopy and thermal imagery.

Python API (the CLI is a thin shell over it)::

    import dinomed
    run = dinomed.pretrain("oct", quick=True)            # built-in phantom data when no data root is set
    backbone = dinomed.load_backbone(run.run_dir)          # a plain timm ViT
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for model hubs: weights come from local files
# Idle OpenMP threads sleep instead of spinning: with DataLoader workers (or anything else) sharing a small
# machine's cores, spinning threads made a training step ~15x slower here. Only effective before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dinomed.models.backbones import load_backbone  # noqa: E402
from dinomed.recipe import Recipe, load_recipe  # noqa: E402

__version__ = "0.1.0"

# Heavier entry points load on first use, so `import dinomed` stays light (no optuna/albumentations import).
_LAZY = {
    "finetune": "dinomed.finetune.api",
    "load_model": "dinomed.finetune.api",
    "merge": "dinomed.finetune.api",
    "tune": "dinomed.tune.api",
    "evaluate": "dinomed.eval.evaluate",
    "knn_eval": "dinomed.eval.evaluate",
    "linear_eval": "dinomed.eval.evaluate",
    "attention_maps": "dinomed.eval.visualize",
    "pca_maps": "dinomed.eval.visualize",
    "build_report": "dinomed.report.html",
}
__all__ = ["pretrain", "load_backbone", "load_recipe", "Recipe", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dinomed' has no attribute '{name}'")


def _as_overrides(overrides: Any, kwargs: dict[str, Any]) -> list[str]:
    """``train__epochs=2`` or ``**{"train.epochs": 2}`` keyword overrides become ``train.epochs=2`` strings."""
    items = list(overrides or ())
    for key, value in kwargs.items():
        dotted = key.replace("__", ".")
        items.append(f"{dotted}={'null' if value is None else value}")
    return items


def pretrain(
    recipe: str | Path | dict[str, Any] | Recipe | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    quick: bool = False,
    resume: str | Path | None = None,
    **kwargs: Any,
):
    """Run DINO pretraining; returns a :class:`~dinomed.ssl.trainer.PretrainResult` (run_dir, metrics, backbone).

    Example:
        >>> run = dinomed.pretrain("oct", quick=True, train__max_steps=50)
    """
    from dinomed.ssl.trainer import pretrain as _pretrain

    return _pretrain(recipe, _as_overrides(overrides, kwargs), quick=quick, resume=resume)
