"""A pretraining run from start (or resume) to the exported teacher: run directory, loop, export, summary.

This is what :func:`dinomed.pretrain` and ``dinomed pretrain`` run; the loop itself is
:class:`~dinomed.ssl.trainer.DINOTrainer`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from dinomed.config import Overrides, normalize_overrides
from dinomed.engine import (
    CONFIG_FILE,
    INIT_FILE,
    METRICS_FILE,
    RESUMABLE,
    SUMMARY_FILE,
    ProcessContext,
    check_resumable,
    default_run_name,
    load_checkpoint,
    new_run_dir,
    read_metrics,
    run_config,
)
from dinomed.data.splits import SPLITS_FILE
from dinomed.files import atomic_write, write_json
from dinomed.recipe import Recipe, load_recipe
from dinomed.ssl.init import InitReport, InitWeights, apply_init, read_init
from dinomed.ssl.monitor import HEALTHY, collapse_verdict
from dinomed.ssl.probes import quality_verdict
from dinomed.ssl.trainer import CHECKPOINT, DINOTrainer

# A resumed pretrain may also stop earlier or later: max_steps does not change the schedules.
PRETRAIN_RESUMABLE = (*RESUMABLE, "train.max_steps")


@dataclass
class PretrainResult:
    """What :func:`dinomed.pretrain` returns.

    ``backbone`` is the teacher (a plain timm model, the better network in DINO); ``backbone_source`` the
    exported weights it was saved to; ``stopped`` is ``None`` for a finished run, else the exit code of the
    signal that stopped it (130 Ctrl-C, 143 SIGTERM).
    """

    run_dir: Path
    metrics: dict[str, Any]
    backbone: nn.Module
    backbone_source: str
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    stopped: int | None = None


def _with_init_arch(recipe: Recipe, weights: InitWeights, console: Console) -> Recipe:
    """The recipe with the architecture of the init weights (what the run directory's config then records)."""
    if weights.arch == recipe.model.arch:
        return recipe
    console.print(f"model.arch {recipe.model.arch} -> {weights.arch}: the architecture of the init weights.")
    return replace(recipe, model=replace(recipe.model, arch=weights.arch))


def _freeze_for_fresh_head(recipe: Recipe, report: InitReport, console: Console) -> None:
    """Resolve a continued run's null ``train.freeze_backbone_epochs``: min(1, a tenth of the run) when the DINO
    head is fresh, 0 when the init brought one (its targets are already those of a trained head)."""
    if recipe.train.freeze_backbone_epochs is not None:
        return
    fresh = any(key.startswith("head.") for key in report.initialised)
    recipe.train.freeze_backbone_epochs = min(1.0, 0.1 * recipe.train.epochs) if fresh else 0.0
    if fresh:
        console.print(f"Fresh DINO head: the backbone stays frozen for the first "
                      f"{recipe.train.freeze_backbone_epochs:g} epoch(s) (train.freeze_backbone_epochs).")


def start_pretraining(recipe: Recipe, console: Console) -> DINOTrainer:
    """A new run directory (rank 0 picks the name, creates it and writes the config) and its trainer, started
    from ``model.init`` when the recipe names weights."""
    process = ProcessContext.from_environment(recipe.train.device)
    name = process.broadcast(recipe.train.run_name or default_run_name(recipe.name))
    weights = read_init(recipe.model.init) if recipe.model.init is not None else None
    if weights is not None:
        recipe = _with_init_arch(recipe, weights, console if process.is_main else Console(quiet=True))
    run_dir = Path(recipe.train.output_dir) / name
    with new_run_dir(recipe.train.output_dir, name) if process.is_main else nullcontext(run_dir) as run_dir:
        trainer = DINOTrainer(recipe, run_dir, console=console)  # every process (DDP set-up is collective)
        if weights is not None:
            report = apply_init(weights, trainer.student, trainer.teacher, trainer.loss_fn)
            trainer.console.print(report.summary(), highlight=False)
            _freeze_for_fresh_head(recipe, report, trainer.console)
            if process.is_main:
                write_json(run_dir / INIT_FILE, report.to_dict())
        trainer.calibrate_probes()
        if process.is_main:
            atomic_write(run_dir / CONFIG_FILE, recipe.to_yaml())
            if trainer.splits is not None:  # the split pretraining read (the data's own)
                trainer.splits.save(run_dir / SPLITS_FILE)
    trainer.console.print(f"Run directory: {run_dir}")
    process.barrier()
    return trainer


def resume_pretraining(run_dir: Path, overrides: Overrides, console: Console) -> DINOTrainer:
    """The trainer of an existing run at its last checkpoint; only resumable settings may change."""
    config = run_config(run_dir, "pretrain")
    check_resumable((key for key, _ in normalize_overrides(overrides)), PRETRAIN_RESUMABLE)
    trainer = DINOTrainer(load_recipe(config, overrides=overrides), run_dir, console=console)
    ckpt = run_dir / CHECKPOINT
    if ckpt.is_file():
        trainer.load_state_dict(load_checkpoint(ckpt, map_location=trainer.engine.device))
        trainer.console.print(f"Resuming {run_dir} at step {trainer.step} of {trainer.last_step}.")
    else:
        trainer.console.print(f"{run_dir} has no checkpoint yet: starting it from step 0.")
    return trainer


def run_pretraining(trainer: DINOTrainer) -> PretrainResult:
    """Train a started or resumed run to its end (or a stop request), export the teacher, write ``summary.json``."""
    stop = trainer.fit()
    run_dir, console = trainer.run_dir, trainer.console
    if stop.requested:
        console.print(f"Interrupted at step {trainer.step}: checkpoint saved; continue with "
                      f"`dinomed pretrain --resume {run_dir}`.")
    records = read_metrics(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).exists() else []
    finished = trainer.step >= trainer.last_step
    exported = finished or trainer.hopeless
    weights = trainer.export() if exported else run_dir / "export" / "backbone.safetensors"
    verdict = run_verdict(records, trainer)
    skipped = [{"path": str(path), "reason": reason} for path, reason in getattr(trainer.dataset, "skipped", [])]
    if skipped:  # data.on_error: skip — say what was left out, never silently
        console.print(f"[yellow]Skipped {len(skipped)} unreadable file(s)[/] (data.on_error: skip; listed in "
                      f"{run_dir / SUMMARY_FILE}):")
        for item in skipped[:20]:
            console.print(f"  {item['path']}: {item['reason']}", highlight=False)
    training = [r for r in records if "loss" in r]
    metrics = {
        "step": trainer.step,
        "last_step": trainer.last_step,
        "finished": finished,
        "stopped_not_learning": trainer.hopeless,
        "loss": training[-1]["loss"] if training else None,
        "img_per_s": training[-1]["img_per_s"] if training else None,
        **verdict,
        "backbone": str(weights) if exported else None,
        "skipped": skipped,
    }
    if trainer.engine.is_main:
        write_json(run_dir / SUMMARY_FILE, metrics)
    if exported:
        console.print(f"Verdict: [bold]{verdict['verdict']}[/] — collapse check {verdict['collapse']} "
                      f"({verdict['collapse_detail']}); probes {verdict['quality_detail']}", highlight=False)
        console.print(f"Exported teacher backbone: {weights}")
    return PretrainResult(run_dir, metrics, trainer.teacher.backbone, str(weights), records,
                          None if exported or not stop.requested else stop.exit_code)


def run_verdict(records: list[dict[str, Any]], trainer: DINOTrainer) -> dict[str, str]:
    """collapsed / not learning / learning / unknown, with the evidence: the collapse monitor first (a collapsed
    run learns nothing whatever the probes say), then the probes after the lr warm-up and any backbone freeze."""
    if not any("loss" in r for r in records):
        return {"verdict": "unknown", "collapse": "unknown", "collapse_detail": "no metrics recorded",
                "quality": "unknown", "quality_detail": "no metrics recorded"}
    collapse, collapse_detail = collapse_verdict(records)
    quality, quality_detail = quality_verdict(records, after_step=trainer.settled_step)
    return {"verdict": "collapsed" if collapse != HEALTHY else quality, "collapse": collapse,
            "collapse_detail": collapse_detail, "quality": quality, "quality_detail": quality_detail}
