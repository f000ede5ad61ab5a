"""The Python API: every command of the CLI is one of these functions, and notebooks call them directly.

One convention everywhere: the recipe comes first (a built-in name, a YAML path, a dict or a
:class:`~dinomed.recipe.Recipe`); ``overrides`` is a mapping (``{"data.root": "/data/oct #1"}``, values taken
exactly as given) or a list of ``"key=value"`` strings (values parsed as YAML, as on the command line);
``quick=True`` merges the CPU-sized profile; everything that prints takes ``console=`` (a
:class:`rich.console.Console`, e.g. ``Console(quiet=True)``). Results are typed dataclasses; those that hold a
backbone hold it as an ``nn.Module`` in ``.backbone`` and say where it came from in ``.backbone_source``.

Example:
    >>> import dinomed
    >>> run = dinomed.pretrain("oct", quick=True, overrides={"train.max_steps": 50})
    >>> knn = dinomed.knn_eval(backbone=run.run_dir)          # recipe read from the run directory
    >>> seg = dinomed.finetune("endoscopy", task="seg", backbone=run.run_dir, labels=0.1, quick=True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from torch import nn

from dinomed.config import Overrides, normalize_overrides
from dinomed.engine import CONFIG_FILE
from dinomed.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from dinomed.data.records import ImageDataset
    from dinomed.eval.evaluate import EvalResult
    from dinomed.finetuning.export import OnnxExport
    from dinomed.finetuning.model import FinetunedModel
    from dinomed.finetuning.predict import PredictResult
    from dinomed.finetuning.run import FinetuneResult
    from dinomed.report.html import Report
    from dinomed.report.visuals import AttentionOutput
    from dinomed.ssl.run import PretrainResult
    from dinomed.tuning.run import TuneResult

__all__ = ["pretrain", "finetune", "tune", "evaluate", "knn_eval", "linear_eval", "attention_maps", "pca_maps",
           "augment_preview", "predict", "merge", "export", "build_report", "load_backbone", "load_model", "load_recipe"]

RecipeLike = str | Path | Mapping[str, Any] | Recipe


def _resolve(recipe: RecipeLike, overrides: Overrides, quick: bool, settings: Mapping[str, Any] = ()) -> Recipe:
    """The recipe with the call's own settings (``task=``, ``labels=`` ...) and then the user's overrides."""
    merged = {**dict(settings), **dict(normalize_overrides(overrides))}
    return load_recipe(dict(recipe) if isinstance(recipe, Mapping) else recipe, overrides=merged, quick=quick)


def _recipe_of(backbone: Any, recipe: RecipeLike | None, overrides: Overrides, quick: bool) -> Recipe:
    """The recipe given, else the ``config.yaml`` of the run directory ``backbone`` names."""
    if recipe is None:
        config = Path(str(backbone)) / CONFIG_FILE if not isinstance(backbone, nn.Module) else None
        if config is None or not config.is_file():
            raise ValueError(f"no recipe given and backbone '{backbone}' is not a run directory with a "
                             f"{CONFIG_FILE}; pass a recipe (it names the data and the architecture)")
        recipe = config
    return _resolve(recipe, overrides, quick)


def _console(console: Console | None) -> Console:
    return console if console is not None else Console()


def pretrain(recipe: RecipeLike | None = None, *, overrides: Overrides = None, quick: bool = False,
             init: str | Path | None = None, resume: str | Path | None = None,
             console: Console | None = None) -> PretrainResult:
    """DINO pretraining (or ``resume=RUN_DIR`` to continue one); exports the teacher backbone.

    ``init`` starts the backbone from existing weights (continued pretraining, ``model.init``). Returns a
    :class:`~dinomed.ssl.run.PretrainResult`.
    """
    from dinomed.ssl.run import resume_pretraining, run_pretraining, start_pretraining

    if resume is not None:
        if recipe is not None or init is not None:
            raise ValueError("resume continues a run with its stored config; do not pass a recipe or init with it")
        return run_pretraining(resume_pretraining(Path(resume), overrides, _console(console)))
    if recipe is None:
        raise ValueError("pretrain needs a recipe (name or YAML path) or resume=RUN_DIR")
    settings = {"model.init": str(init)} if init is not None else {}
    return run_pretraining(start_pretraining(_resolve(recipe, overrides, quick, settings), _console(console)))


def _finetune_settings(task: str | None, backbone: str | Path | None, mode: str | None,
                       labels: int | float | None) -> dict[str, Any]:
    given = {"finetune.task": task, "finetune.backbone": None if backbone is None else str(backbone),
             "finetune.mode": mode, "data.labelled": labels}
    return {key: value for key, value in given.items() if value is not None}


def finetune(recipe: RecipeLike | None = None, *, task: str | None = None, backbone: str | Path | None = None,
             labels: int | float | None = None, mode: str | None = None, overrides: Overrides = None,
             quick: bool = False, out: str | Path | None = None, resume: str | Path | None = None,
             console: Console | None = None) -> FinetuneResult:
    """Fine-tune a backbone with a task head; arguments left ``None`` keep the recipe's ``finetune`` values.

    ``labels``: an int N of labelled train images or a fraction in (0, 1] (drawn from the train split only);
    ``mode``: ``lora`` (adapters + head), ``full`` or ``frozen``; ``out``: the run directory to create.
    Returns a :class:`~dinomed.finetuning.run.FinetuneResult`.
    """
    from dinomed.finetuning.run import resume_finetuning, run_finetuning, start_finetuning

    if resume is not None:
        return run_finetuning(resume_finetuning(Path(resume), overrides, _console(console)))
    if recipe is None:
        raise ValueError("finetune needs a recipe (name or YAML path) or resume=RUN_DIR")
    settings = _finetune_settings(task, backbone, mode, labels)
    if out is not None:
        settings.update({"finetune.output_dir": str(Path(out).parent), "finetune.run_name": Path(out).name})
    return run_finetuning(start_finetuning(_resolve(recipe, overrides, quick, settings), _console(console)))


def tune(recipe: RecipeLike, *, task: str | None = None, backbone: str | Path | None = None,
         labels: int | float | None = None, mode: str | None = None, trials: int | None = None,
         storage: str | None = None, study: str | None = None, timeout: float | None = None,
         overrides: Overrides = None, quick: bool = False, out: str | Path | None = None, retrain: bool = True,
         console: Console | None = None) -> TuneResult:
    """Optuna search of the recipe's ``tune.space`` with grouped k-fold CV inside the label budget, then one
    retrain and one test evaluation. Rerun with the same ``study``/``storage`` to resume. Returns a
    :class:`~dinomed.tuning.run.TuneResult`."""
    from dinomed.tuning.run import run_tuning

    base = _resolve(recipe, overrides, quick, _finetune_settings(task, backbone, mode, labels))
    return run_tuning(base, trials=trials, storage=storage, study=study, timeout=timeout, out=out, retrain=retrain,
                      console=_console(console))


def evaluate(recipe: RecipeLike | None = None, *, backbone: str | Path | nn.Module, method: str = "knn",
             overrides: Overrides = None, quick: bool = False, dataset: ImageDataset | None = None,
             splits: Mapping[str, Sequence[int]] | None = None, transform: Any = None,
             out: str | Path | None = None, console: Console | None = None) -> EvalResult:
    """Frozen-feature evaluation, ``method`` ``knn`` or ``linear``, on the recipe's data and grouped splits.

    ``recipe`` defaults to the backbone's run directory config; ``backbone`` is a run dir, export, checkpoint,
    module or ``"random"`` (the baseline). Returns an :class:`~dinomed.eval.evaluate.EvalResult`.
    """
    from dinomed.eval.evaluate import evaluate_backbone

    return evaluate_backbone(_recipe_of(backbone, recipe, overrides, quick), backbone, method, dataset=dataset,
                             splits=splits, transform=transform, out=out, console=_console(console))


def knn_eval(recipe: RecipeLike | None = None, *, backbone: str | Path | nn.Module, **kwargs: Any) -> EvalResult:
    """Weighted kNN (k=20, T=0.07 by default; ``eval.knn_k`` / ``eval.knn_temperature``); see :func:`evaluate`."""
    return evaluate(recipe, backbone=backbone, method="knn", **kwargs)


def linear_eval(recipe: RecipeLike | None = None, *, backbone: str | Path | nn.Module, **kwargs: Any) -> EvalResult:
    """Linear probe with a learning-rate sweep chosen on val (``eval.linear_*``); see :func:`evaluate`."""
    return evaluate(recipe, backbone=backbone, method="linear", **kwargs)


def attention_maps(recipe: RecipeLike | None = None, *, backbone: str | Path | nn.Module,
                   inputs: str | Path | ImageDataset | None = None, out: str | Path = "attention",
                   overrides: Overrides = None, quick: bool = False, count: int = 8, keep: float | None = None,
                   console: Console | None = None) -> AttentionOutput:
    """Last-block CLS attention per head and its ``keep``-mass masks as PNGs for ``count`` images of ``inputs``
    (file, folder, dataset; default the recipe's data), with Jaccard against masks when the images have them."""
    from dinomed.report.visuals import write_attention_maps

    return write_attention_maps(_recipe_of(backbone, recipe, overrides, quick), backbone, inputs, out, count=count,
                                keep=keep, console=_console(console))


def pca_maps(recipe: RecipeLike | None = None, *, backbone: str | Path | nn.Module,
             inputs: str | Path | ImageDataset | None = None, out: str | Path = "pca", overrides: Overrides = None,
             quick: bool = False, count: int = 8, foreground: float | None = None,
             console: Console | None = None) -> Path:
    """First three PCA components of patch features as RGB (DINOv2 style), one grid ``out/pca.png``."""
    from dinomed.report.visuals import write_pca_maps

    return write_pca_maps(_recipe_of(backbone, recipe, overrides, quick), backbone, inputs, out, count=count,
                          foreground_threshold=foreground, console=_console(console))


def augment_preview(recipe: RecipeLike, *, overrides: Overrides = None, quick: bool = False,
                    data: str | Path | None = None, out: str | Path = "augment_preview.png", samples: int = 4,
                    seed: int = 0, console: Console | None = None) -> Path:
    """A PNG grid of ``samples`` images with their DINO global and local views (``data``: a folder or a
    .csv/.json manifest replacing the recipe's data)."""
    from dinomed.augment.preview import data_settings, save_preview
    from dinomed.augment.multicrop import build_multicrop
    from dinomed.data.datasets import build_dataset

    cfg = _resolve(recipe, overrides, quick, data_settings(data) if data is not None else {})
    dataset = build_dataset(cfg.data, cfg.modality)
    multicrop = build_multicrop(cfg.modality, cfg.augment, cfg.data.channels)
    title = f"{cfg.name}: {cfg.modality} preset, strength {cfg.augment.strength:g}"
    path = save_preview(dataset, multicrop, out, samples=samples, seed=seed, title=title)
    _console(console).print(f"Wrote {path}")
    return path


def predict(model: str | Path | FinetunedModel, inputs: str | Path, out: str | Path, *,
            console: Console | None = None) -> PredictResult:
    """Predict every image of ``inputs`` (a file or folder) with a fine-tuned model (run dir or loaded model):
    masks (PNG + overlay), depth maps (16-bit PNG + preview) or class probabilities (``predictions.csv``)."""
    from dinomed.finetuning.predict import predict_folder

    return predict_folder(load_model(model) if isinstance(model, (str, Path)) else model, inputs, out,
                          console=_console(console))


def merge(run_dir: str | Path, out: str | Path, *, console: Console | None = None) -> Path:
    """Fold a run's LoRA adapters into a plain backbone (``backbone.safetensors`` + ``backbone.json``) in ``out``."""
    from dinomed.finetuning.run import merge as merge_run

    path = merge_run(run_dir, out)
    _console(console).print(f"Merged backbone written to {path}")
    return path


def export(run_dir: str | Path, *, onnx: str | Path, console: Console | None = None) -> OnnxExport:
    """A fine-tuned model (run dir or its ``model/``) as an ONNX graph for onnxruntime: LoRA merged, dynamic batch,
    input size and normalisation in the metadata, checked against PyTorch (needs ``pip install "dinomed[deploy]"``)."""
    from dinomed.finetuning.export import export_onnx

    exported = export_onnx(load_model(run_dir), onnx)
    _console(console).print(f"Wrote {exported.path} (onnxruntime vs PyTorch on a random batch: largest difference "
                            f"{exported.max_abs_diff:.2e})")
    return exported


def build_report(run_dir: str | Path, out: str | Path | None = None, *, samples: int = 4,
                 console: Console | None = None) -> Report:
    """One self-contained HTML report of a run (default ``RUN_DIR/report.html``); lists what it could not show."""
    from dinomed.report.html import write_report

    return write_report(run_dir, out, samples=samples, console=_console(console))


def load_backbone(path: str | Path) -> nn.Module:
    """A backbone exported by dinomed (weights file, export folder or run dir) as a plain timm model, on CPU."""
    from dinomed.models.backbones import load_backbone as load

    return load(path)


def load_model(run_dir: str | Path) -> FinetunedModel:
    """The fine-tuned model of a run (or its ``model/`` folder) on CPU in eval mode, with ``.predict(image)``."""
    from dinomed.finetuning.run import load_model as load

    return load(run_dir)
