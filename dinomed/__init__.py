"""dinomed: DINO self-supervised pretraining and LoRA fine-tuning of ViTs for OCT, endoscopy and thermal imagery.

Python API (the CLI is a thin shell over it; see :mod:`dinomed.api` for the shared conventions)::

    import dinomed
    run = dinomed.pretrain("oct", quick=True)               # built-in phantom data when no data root is set
    backbone = dinomed.load_backbone(run.run_dir)             # a plain timm ViT

``import dinomed`` loads nothing heavy and changes nothing in the process (no environment variables); each name
is imported on first use.
"""

# ruff: noqa: F401  (the TYPE_CHECKING block re-exports the API for type checkers and IDEs)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it: the whole public API, each imported on first use
_API = {
    **dict.fromkeys(("pretrain", "finetune", "tune", "evaluate", "knn_eval", "linear_eval", "attention_maps",
                     "pca_maps", "augment_preview", "predict", "merge", "export", "build_report", "load_backbone",
                     "load_model"), "dinomed.api"),
    "load_recipe": "dinomed.recipe",
    "Recipe": "dinomed.recipe",
    "register_modality": "dinomed.augment.modalities",
    "register_head": "dinomed.finetuning.heads",
    "TaskHead": "dinomed.finetuning.heads",
    "PretrainResult": "dinomed.ssl.run",
    "FinetuneResult": "dinomed.finetuning.run",
    "TuneResult": "dinomed.tuning.run",
    "EvalResult": "dinomed.eval.evaluate",
    "AttentionOutput": "dinomed.report.visuals",
    "PredictResult": "dinomed.finetuning.predict",
    "Report": "dinomed.report.html",
    "FinetunedModel": "dinomed.finetuning.model",
    "OnnxExport": "dinomed.finetuning.export",
    "TrainingDiverged": "dinomed.engine",
    "ConfigError": "dinomed.config",
    "DataError": "dinomed.data.readers",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from dinomed.api import (
        attention_maps,
        augment_preview,
        build_report,
        evaluate,
        export,
        finetune,
        knn_eval,
        linear_eval,
        load_backbone,
        load_model,
        merge,
        pca_maps,
        predict,
        pretrain,
        tune,
    )
    from dinomed.augment.modalities import register_modality
    from dinomed.config import ConfigError
    from dinomed.data.readers import DataError
    from dinomed.engine import TrainingDiverged
    from dinomed.eval.evaluate import EvalResult
    from dinomed.finetuning.export import OnnxExport
    from dinomed.finetuning.heads import TaskHead, register_head
    from dinomed.finetuning.model import FinetunedModel
    from dinomed.finetuning.predict import PredictResult
    from dinomed.finetuning.run import FinetuneResult
    from dinomed.recipe import Recipe, load_recipe
    from dinomed.report.html import Report
    from dinomed.report.visuals import AttentionOutput
    from dinomed.ssl.run import PretrainResult
    from dinomed.tuning.run import TuneResult


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dinomed' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
