"""Python API of fine-tuning: :func:`finetune`, :func:`load_model` and :func:`merge` (the CLI wraps these).

Example:
    >>> result = finetune("endoscopy", task="seg", backbone="runs/endoscopy-1", labels=0.1, quick=True)
    >>> model = load_model(result.run_dir)
    >>> mask = model.predict("frame.png")
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from dinomed.checkpoint import load_checkpoint
from dinomed.config import ConfigError
from dinomed.finetune.model import MODEL_DIR, FinetunedModel, merged_backbone, read_model
from dinomed.finetune.trainer import LAST, SPLITS_FILE, FinetuneResult, FinetuneTrainer
from dinomed.models.backbones import BACKBONE_WEIGHTS, save_backbone
from dinomed.recipe import Recipe, load_recipe
from dinomed.runs import CONFIG_FILE

# Keys that may change when resuming: they do not alter the optimisation path.
RESUME_OVERRIDABLE = ("train.device", "train.num_threads", "data.num_workers", "train.amp")


def _recipe(recipe: Any, task: str, backbone: str, mode: str, labels: int | float | None,
            overrides: Sequence[str], quick: bool, out: str | Path | None) -> Recipe:
    sets = [f"finetune.task={task}", f"finetune.mode={mode}", f"finetune.backbone={backbone}"]
    if labels is not None:
        sets.append(f"data.labelled={labels}")
    if out is not None:
        out = Path(out)
        sets += [f"finetune.output_dir={out.parent}", f"finetune.run_name={out.name}"]
    return load_recipe(recipe, [*sets, *overrides], quick=quick)


def _new_run_dir(recipe: Recipe) -> tuple[Path, bool]:
    """The run directory of a new run, and whether this call created it; an existing run is never touched."""
    cfg = recipe.finetune
    name = cfg.run_name or f"{recipe.name}-{cfg.task}-{cfg.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.output_dir) / name
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir}: already holds a run; use --resume {run_dir} or another --out "
                              "(nothing was overwritten)")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, created


def _start(config: Recipe, console: Console) -> FinetuneTrainer:
    """Build the trainer of a new run; a run that cannot start leaves no half-written directory behind
    (a stale ``splits.json`` would otherwise be reused by the next run with the same ``--out``)."""
    run_dir, created = _new_run_dir(config)
    try:
        trainer = FinetuneTrainer(config, run_dir, console=console)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            (run_dir / SPLITS_FILE).unlink(missing_ok=True)
        raise
    (run_dir / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
    return trainer


def finetune(
    recipe: str | Path | dict[str, Any] | Recipe | None = None,
    *,
    task: str = "seg",
    backbone: str | Path = "random",
    labels: int | float | None = None,
    mode: str = "lora",
    overrides: Sequence[str] = (),
    quick: bool = False,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
) -> FinetuneResult:
    """Fine-tune ``backbone`` with a ``task`` head on the recipe's data; returns run dir, metrics and model.

    ``labels``: an int N of labelled train images or a fraction (0, 1] (from the train split only).
    ``mode``: ``lora`` (adapters + head), ``full`` (every weight) or ``frozen`` (head only).
    """
    console = console or Console()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir}: not a fine-tuning run directory (no {CONFIG_FILE})")
        for text in overrides:
            if text.split("=", 1)[0].strip() not in RESUME_OVERRIDABLE:
                raise ConfigError("--set", text, f"cannot change this when resuming; allowed: {', '.join(RESUME_OVERRIDABLE)}")
        trainer = FinetuneTrainer(load_recipe(run_dir / CONFIG_FILE, list(overrides)), run_dir, console=console)
        if (run_dir / LAST).is_file():
            trainer.load_state_dict(load_checkpoint(run_dir / LAST, map_location=trainer.device))
            console.print(f"Resuming {run_dir} at epoch {trainer.epoch}, step {trainer.step}.")
    else:
        if recipe is None:
            raise ValueError("finetune needs a recipe (name or YAML path) or resume=RUN_DIR")
        trainer = _start(_recipe(recipe, task, str(backbone), mode, labels, overrides, quick, out), console)
    console.print(f"Run directory: {trainer.run_dir}")
    trainer.fit()
    metrics = trainer.finish()
    return FinetuneResult(trainer.run_dir, metrics, trainer.model.eval())


def load_model(run_dir: str | Path) -> FinetunedModel:
    """The fine-tuned model of a run (or its ``model/`` folder), on CPU in eval mode, with ``.predict``."""
    path = Path(run_dir)
    return read_model(path / MODEL_DIR if (path / MODEL_DIR).is_dir() else path)


def merge(run_dir: str | Path, out: str | Path) -> Path:
    """Fold a run's LoRA adapters into a plain backbone written to ``out`` (save_backbone format)."""
    out = Path(out)
    if (out / BACKBONE_WEIGHTS).exists():
        raise FileExistsError(f"{out}: already holds a backbone; choose another --out (nothing was overwritten)")
    model = load_model(run_dir)
    backbone, spec = merged_backbone(model)
    spec.meta = {**spec.meta, "merged_from": str(run_dir), "mode": model.info["mode"]}
    return save_backbone(backbone, spec, out)
