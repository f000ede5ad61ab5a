"""A persistent Optuna study: RDB storage opened (and checked) before any training, seeded TPE, a pruner, resume.

The study lives in an SQLite (or any SQLAlchemy) database, so rerunning the same command resumes it: finished
trials (complete or pruned) count toward the requested total, and a trial cut off by Ctrl-C or a crash is the
only one lost (Optuna marks it failed; heartbeats let a later run fail trials of a killed process).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from dinomed.config import to_dict
from dinomed.recipe import Recipe

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S, GRACE_S = 60, 180  # a RUNNING trial silent for GRACE_S belongs to a dead process


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url``; a URL that cannot be opened fails here, naming it, before any training."""
    if "://" not in url:
        raise ValueError(f"--storage {url}: expected a database URL such as sqlite:///study.db")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as err:  # SQLAlchemy raises many types (ArgumentError, OperationalError, ImportError...)
        raise ValueError(f"--storage {url}: cannot open the study database ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]}); check the path's folder exists and is writable") from None


def fingerprint(recipe: Recipe) -> str:
    """Hash of what defines the search problem (data, split, task, model, space), not of runtime settings."""
    data = {k: v for k, v in to_dict(recipe.data).items() if k != "num_workers"}
    finetune = {k: v for k, v in to_dict(recipe.finetune).items() if k not in ("output_dir", "run_name")}
    tune = {k: to_dict(getattr(recipe.tune, k)) for k in ("folds", "seed", "space")}
    key = {"modality": recipe.modality, "arch": recipe.model.arch, "augment": to_dict(recipe.augment), "data": data,
           "finetune": finetune, "tune": tune}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_pruner(recipe: Recipe, max_steps: int) -> optuna.pruners.BasePruner:
    cfg = recipe.tune
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, cfg.warmup_epochs), max_resource=max_steps)
    return optuna.pruners.NopPruner()


def load_study(name: str, storage: optuna.storages.RDBStorage, recipe: Recipe, direction: str,
               max_steps: int) -> optuna.Study:
    """Create study ``name`` or resume it, refusing one made for a different search problem."""
    exists = any(s.study_name == name for s in optuna.get_all_study_summaries(storage))
    # A resumed TPE with the original seed would redraw its first random points: offset it by the trials held.
    held = len(optuna.load_study(study_name=name, storage=storage).trials) if exists else 0
    sampler = optuna.samplers.TPESampler(multivariate=True, seed=recipe.tune.seed + held)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler,
                                pruner=build_pruner(recipe, max_steps), load_if_exists=True)
    mark = fingerprint(recipe)
    saved = study.user_attrs.get("fingerprint")
    if saved is None:
        study.set_user_attr("fingerprint", mark)
        study.set_user_attr("recipe", recipe.to_dict())
    elif saved != mark:
        raise ValueError(f"study '{name}' in {storage.url} was made for a different recipe (data, split, task, "
                         "model or tune.space changed); choose another --study or storage to start a new one")
    if study.direction.name.lower() != direction:
        raise ValueError(f"study '{name}' is set to {study.direction.name.lower()}, but this task's metric needs "
                         f"{direction}; choose another --study")
    return study


def fail_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a killed or crashed process as failed, with the reason; their numbers.

    ``dinomed tune`` runs a study from one process at a time, so on resume a RUNNING trial can only be a leftover.
    Optuna has no public call to finish another process's trial, hence its storage API.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                           "interrupted: the process running it stopped before the trial finished")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return [t.number for t in stale]


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_summary(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """JSON-ready record of one trial for ``tune.json``."""
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "seconds": seconds, "last_step": trial.last_step, **trial.user_attrs}
