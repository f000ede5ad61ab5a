"""A tuning study: searches LoRA fine-tuning hyper-parameters the way a reviewer accepts.

Cross-validation inside the label budget (grouped folds), TPE with pruning, a persistent study, then one
retrain with the best parameters and one evaluation on the test split, which the search never saw. This is what
:func:`dinomed.tune` and ``dinomed tune`` run.

Example:
    >>> result = dinomed.tune("endoscopy", task="seg", backbone="runs/endoscopy-1", labels=0.1, trials=30)
    >>> result.run_dir / "best.yaml"       # dinomed finetune --recipe best.yaml --task seg --backbone ...
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from rich.console import Console

from dinomed.data.readers import DataError
from dinomed.engine import CONFIG_FILE, Stopped, TrainingDiverged, progress_bar, require_single_process
from dinomed.files import write_json
from dinomed.finetuning.run import resume_finetuning, run_finetuning, start_finetuning
from dinomed.data.splits import SPLITS_FILE
from dinomed.finetuning.trainer import FINAL_METRICS
from dinomed.recipe import Recipe, load_recipe
from dinomed.tuning.objective import CrossValidation, search_splits
from dinomed.tuning.report import save_plots, top_trials, trials_table
from dinomed.tuning.space import apply_params
from dinomed.tuning.study import FINISHED, fail_interrupted, finished_trials, load_study, open_storage, trial_summary

BEST_RECIPE, TUNE_JSON, STUDY_DB = "best.yaml", "tune.json", "study.db"
# Per-trial failures the study survives: divergence to NaN, a NaN metric, out-of-memory, unreadable data.
# Anything else (a shape bug, a config error) is a programming or usage error and stops the study.
TRIAL_ERRORS = (TrainingDiverged, FloatingPointError, torch.OutOfMemoryError, DataError)


class NoTrialCompleted(RuntimeError):
    """Every trial of a study failed or was pruned: there is no best configuration to retrain."""


@dataclass
class TuneResult:
    """What :func:`dinomed.tune` returns; ``summary`` is the content of ``RUN_DIR/tune.json``.

    ``stopped`` is ``None`` for a finished study, else the exit code of the signal that stopped it (130 Ctrl-C,
    143 SIGTERM); the study is then saved as far as it went and the same command resumes it.
    """

    run_dir: Path
    study: optuna.Study
    best_params: dict[str, Any] | None
    best_value: float | None
    final_run_dir: Path | None
    summary: dict[str, Any]
    stopped: int | None = None


def _study_name(recipe: Recipe) -> str:
    cfg = recipe.finetune
    return f"{recipe.name}-{cfg.task}-{cfg.mode}-labels{recipe.data.labelled if recipe.data.labelled is not None else 'all'}"


def run_tuning(
    base: Recipe,
    *,
    trials: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    timeout: float | None = None,
    out: str | Path | None = None,
    retrain: bool = True,
    console: Console | None = None,
) -> TuneResult:
    """Search ``base.tune.space`` with grouped k-fold CV on the labelled subset, then retrain and test once.

    ``trials`` (default ``tune.trials``) is the total the study should hold: rerunning with the same ``study`` and
    ``storage`` resumes it (default storage: ``sqlite:///RUN_DIR/study.db``; RUN_DIR: ``out`` or
    ``finetune.output_dir/tune-<study>``). ``retrain=False`` stops after the search (no test evaluation).
    """
    console = console or Console()
    require_single_process("tune")
    # dinomed prints one line per trial, with a failed trial's reason; optuna's own log would add tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
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
    try:
        _search(optuna_study, objective, remaining, timeout if timeout is not None else base.tune.timeout, console)
        return _finish(optuna_study, base, run_dir, objective, retrain, console)
    except Stopped as stop:
        console.print(f"Interrupted: study '{name}' is saved in {opened.url} as far as it went; rerun the same "
                      "command to resume it.")
        return TuneResult(run_dir, optuna_study, None, None, None, {"study": name}, stop.exit_code)


def _search(study: optuna.Study, objective: CrossValidation, n: int, timeout: float | None, console: Console) -> None:
    if n == 0:
        return
    progress = progress_bar("tune", console, fields="{task.fields[best]}")

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
        raise NoTrialCompleted(f"no trial of study '{study.study_name}' completed; failure reasons are in "
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
    if (final_dir / CONFIG_FILE).is_file():
        result = run_finetuning(resume_finetuning(final_dir, None, console))
    else:
        placed = {"finetune.output_dir": str(final_dir.parent), "finetune.run_name": final_dir.name}
        result = run_finetuning(start_finetuning(load_recipe(recipe, overrides=placed), console))
    if result.stopped is not None:
        raise Stopped(result.stopped)
    return result.run_dir
