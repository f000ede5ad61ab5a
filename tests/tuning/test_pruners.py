"""The configured pruners stop trials whose per-epoch CV scores trail the others (Optuna's median / Hyperband)."""

from __future__ import annotations

import optuna
import pytest

from dinomed.recipe import load_recipe
from dinomed.tuning.study import build_pruner

EPOCHS = 9  # reported steps per trial: folds x epochs in the real objective


def _run_trials(pruner: optuna.pruners.BasePruner, scores: list[float]) -> list[optuna.trial.TrialState]:
    """One trial per score, each reporting that score at every step (as CrossValidation reports per epoch)."""
    study = optuna.create_study(study_name="pruning", direction="maximize", pruner=pruner)  # name fixes brackets
    for score in scores:
        trial = study.ask()
        state = optuna.trial.TrialState.COMPLETE
        for step in range(EPOCHS):
            trial.report(score, step)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        study.tell(trial, score if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    return [t.state for t in study.trials]


@pytest.mark.parametrize("name, kind", [("median", optuna.pruners.MedianPruner),
                                        ("hyperband", optuna.pruners.HyperbandPruner),
                                        ("none", optuna.pruners.NopPruner)])
def test_recipe_selects_the_pruner(name: str, kind: type) -> None:
    recipe = load_recipe("endoscopy", overrides=[f"tune.pruner={name}"])
    assert isinstance(build_pruner(recipe, EPOCHS), kind)


def test_hyperband_prunes_weak_trials_and_keeps_strong_ones() -> None:
    recipe = load_recipe("endoscopy", overrides=["tune.pruner=hyperband", "tune.warmup_epochs=1"])
    scores = [0.9, 0.8, 0.85, 0.1, 0.05, 0.95, 0.02, 0.1, 0.9, 0.01]
    states = _run_trials(build_pruner(recipe, EPOCHS), scores)
    pruned = [v for v, s in zip(scores, states) if s == optuna.trial.TrialState.PRUNED]
    complete = [v for v, s in zip(scores, states) if s == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete and max(complete) == max(scores), states  # the best trial is never stopped
    assert sum(pruned) / len(pruned) < sum(complete) / len(complete), states


def test_median_pruner_waits_for_its_startup_trials() -> None:
    recipe = load_recipe("endoscopy", overrides=["tune.pruner=median", "tune.startup_trials=3", "tune.warmup_epochs=0"])
    states = _run_trials(build_pruner(recipe, EPOCHS), [0.5, 0.1, 0.6, 0.05])
    assert states[:3] == [optuna.trial.TrialState.COMPLETE] * 3  # nothing pruned before 3 finished trials
    assert states[3] == optuna.trial.TrialState.PRUNED
