"""Resuming a study whose process was killed: the trial it left RUNNING is recorded as failed, with the reason."""

from __future__ import annotations

from pathlib import Path

import optuna

from dinomed.recipe import load_recipe
from dinomed.tuning.study import fail_interrupted, finished_trials, load_study, open_storage


def test_resume_fails_the_trial_a_killed_process_left_running(tmp_path: Path) -> None:
    recipe = load_recipe("endoscopy")
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = load_study("s", storage, recipe, "maximize", max_steps=3)
    study.tell(study.ask(), 0.5)
    study.ask()  # then the process dies: the trial stays RUNNING in the database
    resumed = load_study("s", open_storage(f"sqlite:///{tmp_path / 'study.db'}"), recipe, "maximize", max_steps=3)
    assert fail_interrupted(resumed) == [1]
    states = [t.state for t in resumed.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert "interrupted" in resumed.trials[1].user_attrs["fail_reason"]
    assert finished_trials(resumed) == 1  # the failed one does not count towards --trials: it is run again
