"""A fine-tuning run from start (or resume) to the saved model, and reading, merging models back.

This is what :func:`dinomed.finetune`, :func:`dinomed.load_model` and :func:`dinomed.merge` run; the loop is
:class:`~dinomed.finetuning.trainer.FinetuneTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from dinomed.config import Overrides, normalize_overrides
from dinomed.engine import (
    CONFIG_FILE,
    check_resumable,
    default_run_name,
    load_checkpoint,
    new_run_dir,
    require_single_process,
    run_config,
)
from dinomed.files import atomic_write
from dinomed.finetuning.model import MODEL_DIR, FinetunedModel, merged_backbone, read_model
from dinomed.finetuning.trainer import LAST, FinetuneTrainer
from dinomed.models.backbones import BACKBONE_WEIGHTS, save_backbone
from dinomed.recipe import Recipe, load_recipe


@dataclass
class FinetuneResult:
    """What :func:`dinomed.finetune` returns: the run, its final metrics (``None`` when stopped early), the model
    (backbone + head, in eval mode) and where its backbone came from. ``stopped`` is ``None`` for a finished run,
    else the exit code of the signal that stopped it (130 Ctrl-C, 143 SIGTERM)."""

    run_dir: Path
    metrics: dict[str, Any] | None
    model: FinetunedModel
    backbone_source: str
    stopped: int | None = None

    @property
    def backbone(self) -> Any:
        """The fine-tuned backbone (with its adapters in mode ``lora``)."""
        return self.model.vit


def start_finetuning(recipe: Recipe, console: Console) -> FinetuneTrainer:
    """Build the trainer of a new run; a run that cannot start leaves no half-written directory behind."""
    require_single_process("finetune")
    cfg = recipe.finetune
    name = cfg.run_name or default_run_name(recipe.name, cfg.task, cfg.mode)
    with new_run_dir(cfg.output_dir, name) as run_dir:
        trainer = FinetuneTrainer(recipe, run_dir, console=console)
        atomic_write(run_dir / CONFIG_FILE, recipe.to_yaml())
    return trainer


def resume_finetuning(run_dir: Path, overrides: Overrides, console: Console) -> FinetuneTrainer:
    """The trainer of an existing run at its last checkpoint; only resumable settings may change."""
    require_single_process("finetune")
    config = run_config(run_dir, "fine-tuning")
    check_resumable(key for key, _ in normalize_overrides(overrides))
    trainer = FinetuneTrainer(load_recipe(config, overrides=overrides), run_dir, console=console)
    if (run_dir / LAST).is_file():
        trainer.load_state_dict(load_checkpoint(run_dir / LAST, map_location=trainer.device))
        trainer.console.print(f"Resuming {run_dir} at epoch {trainer.epoch}, step {trainer.step}.")
    return trainer


def run_finetuning(trainer: FinetuneTrainer) -> FinetuneResult:
    """Train a started or resumed run, evaluate the test split once with the best checkpoint, save the model."""
    trainer.console.print(f"Run directory: {trainer.run_dir}")
    stop = trainer.fit()
    source = str(trainer.spec.meta.get("source"))
    if stop.requested:
        trainer.console.print(f"Interrupted at epoch {trainer.epoch}, step {trainer.step}: checkpoint saved; continue "
                              f"with `dinomed finetune --resume {trainer.run_dir}`.")
        return FinetuneResult(trainer.run_dir, None, trainer.model.eval(), source, stop.exit_code)
    metrics = trainer.finish()
    return FinetuneResult(trainer.run_dir, metrics, trainer.model.eval(), source)


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
