"""``dinomed tune``: Optuna search over LoRA fine-tuning hyper-parameters (a thin shell over dinomed.api.tune)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dinomed.cli.app import QUICK_HELP, SET_HELP, app, console
from dinomed.cli.finetune import BACKBONE_HELP, TASK_HELP, budget


@app.command()
def tune(
    recipe: str = typer.Option(..., "--recipe", "-r", help="Recipe YAML path or built-in name (its tune: section)."),
    task: Optional[str] = typer.Option(None, "--task", help=TASK_HELP),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help=BACKBONE_HELP),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labelled train images: a count (20) or a fraction (0.1)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="lora, full or frozen (default: the recipe's)."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials the study should hold (default tune.trials); finished ones count when resuming."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. sqlite:///study.db (default: RUN_DIR/study.db)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name; the same name and storage resume it."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Start no new trial after this many seconds."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default finetune.output_dir/tune-STUDY)."),
    no_retrain: bool = typer.Option(False, "--no-retrain", help="Stop after the search: no retrain, no test evaluation."),
) -> None:
    """Tune fine-tuning with grouped k-fold CV inside the label budget; retrain the best and test it once."""
    from dinomed.api import tune as run

    result = run(recipe, task=task, backbone=backbone, labels=budget(labels), mode=mode, trials=trials,
                 storage=storage, study=study, timeout=timeout, overrides=set_, quick=quick, out=out,
                 retrain=not no_retrain, console=console)
    if result.stopped is not None:
        raise typer.Exit(result.stopped)
    console.print(f"Done: {result.run_dir}  best CV {result.best_value:.4f}  {result.best_params}")
