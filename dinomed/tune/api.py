"""Python API of tuning: :func:`tune` searches LoRA fine-tuning hyper-parameters the way a reviewer accepts.

Cross-validation inside the label budget (grouped folds), TPE with pruning, a persistent study, then one
retrain with the best parameters and one evaluation on the test split, which the search never saw.

Example:
    >>> result = tune("endoscopy", task="seg", backbone="runs/endoscopy-1", labels=0.1, trials=30)
    >>> result.run_dir / "best.yaml"       # dinomed finetune --recipe best.yaml --task seg --backbone ...
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dinomed.finetune.api import finetune
from dinomed.finetune.trainer import FINAL_METRICS, SPLITS_FILE
from dinomed.recipe import Recipe, load_recipe
from dinomed.runs import CONFIG_FILE, write_json
from dinomed.tune.objective import CrossValidation, search_splits
from dinomed.tune.report import save_plots, top_trials, trials_table
from dinomed.tune.space import apply_params
from dinomed.tune.study import FINISHED, fail_interrupted, finished_trials, load_study, open_storage, trial_summary

BEST_RECIPE, TUNE_JSON, STUDY_DB = "best.yaml", "tune.json", "study.db"
# Per-trial failures the study survives (divergence to NaN, CUDA out-of-memory, NaN metrics); config errors stop it.
TRIAL_ERRORS = (RuntimeError, FloatingPointError)


@dataclass
class TuneResult:
    """What :func:`tune` returns; ``summary`` is the content of ``RUN_DIR/tune.json``."""

    run_dir: Path
    study: optuna.Study
    best_params: dict[str, Any]
    best_value: float
    final_run_dir: Path | None
    summary: dict[str, Any]


def _base_recipe(recipe: Any, task: str, backbone: str, mode: str, labels: int | float | None,
                 overrides: Sequence[str], quick: bool) -> Recipe:
    sets = [f"finetune.task={task}", f"finetune.mode={mode}", f"finetune.backbone={backbone}"]
    if labels is not None:
        sets.append(f"data.labelled={labels}")
    return load_recipe(recipe, [*sets, *overrides], quick=quick)


def _study_name(recipe: Recipe) -> str:
    cfg = recipe.finetune
    return f"{recipe.name}-{cfg.task}-{cfg.mode}-labels{recipe.data.labelled if recipe.data.labelled is not None else 'all'}"


def tune(
    recipe: str | Path | dict[str, Any] | Recipe,
    *,
    task: str = "seg",
    backbone: str | Path = "random",
    labels: int | float | None = None,
    mode: str = "lora",
    trials: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    timeout: float | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    out: str | Path | None = None,
    retrain: bool = True,
    console: Console | None = None,
) -> TuneResult:
    """Search ``recipe.tune.space`` with grouped k-fold CV on the labelled subset, then retrain and test once.

    ``trials`` (default ``tune.trials``) is the total the study should hold: rerunning with the same ``study`` and
    ``storage`` resumes it (default storage: ``sqlite:///RUN_DIR/study.db``; RUN_DIR: ``out`` or
    ``finetune.output_dir/tune-<study>``). ``retrain=False`` stops after the search (no test evaluation).
    """
    console = console or Console()
    base = _base_recipe(recipe, task, str(backbone), mode, labels, overrides, quick)
    name = study or _study_name(base)
    run_dir = Path(out) if out is not None else Path(base.finetune.output_dir) / f"tune-{name}"
    opened = open_storage(storage) if storage else None  # a bad URL fails before any data or training
    run_dir.mkdir(parents=True, exist_ok=True)
    opened = opened or open_storage(f"sqlite:///{(run_dir / STUDY_DB).resolve()}")
    splits = search_splits(base)
    splits.save(run_dir / SPLITS_FILE)
    objective = CrossValidation(base, splits, run_dir)  # more folds than labelled groups fails here
    steps = base.tune.folds * objective.max_epochs
    optuna_study = load_study(name, opened, base, objective.direction, steps)
    interrupted = fail_interrupted(optuna_study)
    if interrupted:
        console.print(f"Trial(s) {interrupted} were left running by a stopped process: recorded as failed.")
    total = trials or base.tune.trials
    remaining = max(0, total - finished_trials(optuna_study))
    console.print(f"Study '{name}' ({opened.url}): {finished_trials(optuna_study)} finished trial(s), running "
                  f"{remaining} more; {base.tune.folds}-fold grouped CV on {len(splits.labelled)} labelled images; "
                  f"test split ({len(splits.test)} images) held out. Run directory: {run_dir}")
    _search(optuna_study, objective, remaining, timeout if timeout is not None else base.tune.timeout, console)
    return _finish(optuna_study, base, run_dir, objective, retrain, console)


def _search(study: optuna.Study, objective: CrossValidation, n: int, timeout: float | None, console: Console) -> None:
    if n == 0:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    progress = Progress(TextColumn("[bold]tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                        TimeElapsedColumn(), console=console)

    def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = next(iter(top_trials(study, 1)), None)
        note = f"best #{best.number} {objective.metric} {best.value:.4f}" if best else "no completed trial yet"
        progress.update(bar, advance=1, best=note)
        reason = trial.user_attrs.get("fail_reason", "")
        console.print(f"trial {trial.number}: {trial.state.name.lower()}"
                      f"{f' {objective.metric} {trial.value:.4f}' if trial.value is not None else ''} {reason}")

    with progress:
        bar = progress.add_task("tune", total=n, best="")
        study.optimize(objective, n_trials=n, timeout=timeout, catch=TRIAL_ERRORS, callbacks=[advance],
                       gc_after_trial=True)


def _finish(study: optuna.Study, base: Recipe, run_dir: Path, objective: CrossValidation, retrain: bool,
            console: Console) -> TuneResult:
    summary: dict[str, Any] = {
        "study": study.study_name, "direction": objective.direction, "metric": objective.metric,
        "folds": base.tune.folds, "pruner": base.tune.pruner, "labelled": len(objective.splits.labelled),
        "test_images": len(objective.splits.test),
        "states": {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in optuna.trial.TrialState},
        "trials_per_hour": _trials_per_hour(study),
        "trials": [trial_summary(t) for t in study.get_trials(deepcopy=False)],
    }
    best = next(iter(top_trials(study, 1)), None)
    if best is None:
        write_json(run_dir / TUNE_JSON, summary)
        raise RuntimeError(f"no trial of study '{study.study_name}' completed; failure reasons are in "
                           f"{run_dir / TUNE_JSON} (trials[].fail_reason)")
    console.print(trials_table(study, objective.metric))
    best_recipe = apply_params(base, best.params)
    recipe_file = _write_best_recipe(best_recipe, run_dir)
    summary.update(best={"number": best.number, "value": best.value, "params": best.params,
                         "fold_scores": best.user_attrs.get("fold_scores")},
                   best_recipe=BEST_RECIPE, plots=save_plots(study, run_dir, console))
    final_dir = _retrain(best_recipe, run_dir / f"final-{best.number:04d}", console) if retrain else None
    if final_dir is not None:
        metrics = json.loads((final_dir / FINAL_METRICS).read_text(encoding="utf-8"))
        summary["final"] = {"run_dir": final_dir.name, "val": metrics["val"], "test": metrics["test"],
                            "best_epoch": metrics["best_epoch"]}
        console.print(f"Best trial #{best.number} retrained on all {metrics['labelled']} labelled images: "
                      f"test {objective.metric} {metrics['test'][objective.metric]:.4f} ({final_dir})")
    write_json(run_dir / TUNE_JSON, summary)
    console.print(f"Best recipe: {recipe_file}; results: {run_dir / TUNE_JSON}")
    return TuneResult(run_dir, study, best.params, best.value, final_dir, summary)


def _trials_per_hour(study: optuna.Study) -> float | None:
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds()
                  for t in study.get_trials(deepcopy=False, states=FINISHED) if t.datetime_complete)
    return 3600 * finished_trials(study) / seconds if seconds > 0 else None


def _write_best_recipe(recipe: Recipe, run_dir: Path) -> Path:
    """A full recipe that reproduces the best trial with ``dinomed finetune --recipe best.yaml``."""
    data = recipe.to_dict()
    data["name"] = f"{recipe.name}-tuned"
    data["finetune"]["run_name"] = None
    header = (f"# Tuned by dinomed tune ({time.strftime('%Y-%m-%d %H:%M')}). Reproduce with:\n"
              f"# dinomed finetune --recipe best.yaml --task {recipe.finetune.task} --backbone {recipe.finetune.backbone}"
              f" --{recipe.finetune.mode}" + (f" --labels {recipe.data.labelled}\n" if recipe.data.labelled else "\n"))
    path = run_dir / BEST_RECIPE
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _retrain(recipe: Recipe, final_dir: Path, console: Console) -> Path:
    """Fine-tune with the best parameters on the whole labelled subset (val early-stops) and test once.

    A finished retrain is reused; an interrupted one resumes, so rerunning a complete study costs nothing.
    """
    if (final_dir / FINAL_METRICS).is_file():
        return final_dir
    cfg = recipe.finetune
    if (final_dir / CONFIG_FILE).is_file():
        return finetune(resume=final_dir, console=console).run_dir
    return finetune(recipe, task=cfg.task, backbone=cfg.backbone, labels=recipe.data.labelled, mode=cfg.mode,
                    out=final_dir, console=console).run_dir
