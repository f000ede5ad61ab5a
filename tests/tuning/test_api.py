"""End-to-end tuning on tiny phantoms: pruning, a failed trial the study survives, resume, best.yaml, test isolation."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from dinomed.finetuning.trainer import FinetuneTrainer, TaskSamples
from dinomed.recipe import load_recipe
from dinomed.api import tune
from dinomed.tuning.study import open_storage

TINY = ["finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4", "data.phantom.count=64",
        "data.phantom.size=[32,32]", "data.num_workers=0", "model.arch=vit_tiny_patch16_224", "tune.folds=2",
        "tune.startup_trials=1", "tune.warmup_epochs=0", "train.num_threads=1",
        "finetune.lora_targets=[q,v]"]
# A one-parameter space keeps each trial cheap and the enqueued values in control.
LR_ONLY = "tune.space={lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"

GOOD, WEAK, DIVERGES = 3e-3, 1e-4, 1e30


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trial 0 good, trial 1 forced weak (pruned), trial 2 diverges to NaN (failed), then retrain + test."""
    out = tmp_path_factory.mktemp("tune") / "run"
    storage = f"sqlite:///{out.parent / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for lr in (GOOD, WEAK, DIVERGES):
        study.enqueue_trial({"lr": lr}, skip_if_exists=False)
    # Validation Dice made a function of lr so the weak trial is worse at every epoch whatever the tiny run learns.
    evaluate = FinetuneTrainer.evaluate

    def forced(self: FinetuneTrainer, split: str) -> dict[str, float]:
        metrics = evaluate(self, split)
        return {**metrics, "dice": 0.9} if split == "val" and self.cfg.lr == GOOD else \
            {**metrics, "dice": 0.1} if split == "val" and self.cfg.lr == WEAK else metrics

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FinetuneTrainer, "evaluate", forced)
        tune("endoscopy", task="seg", labels=16, trials=3, storage=storage, study="s",
             overrides=[*TINY, "tune.space={lr: {low: 1.0e-4, high: 1.0e+30, log: true}}"], out=out)
    return out


def test_pruned_and_failed_trials_are_recorded_and_the_study_goes_on(run: Path) -> None:
    trials = {t["number"]: t for t in json.loads((run / "tune.json").read_text())["trials"]}
    assert [trials[i]["state"] for i in range(3)] == ["COMPLETE", "PRUNED", "FAIL"]
    assert trials[0]["value"] == pytest.approx(0.9) and trials[0]["fold_scores"] == [0.9, 0.9]
    assert trials[1]["last_step"] == 0  # pruned after its first epoch
    assert "diverged" in trials[2]["fail_reason"]


def test_best_recipe_final_model_and_report_files(run: Path) -> None:
    summary = json.loads((run / "tune.json").read_text())
    assert summary["best"]["number"] == 0 and summary["best"]["params"] == {"lr": GOOD}
    best = load_recipe(run / "best.yaml")
    assert best.finetune.lr == GOOD and best.finetune.task == "seg" and best.data.labelled == 16
    final = run / summary["final"]["run_dir"]
    assert (final / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert 0 <= summary["final"]["test"]["dice"] <= 1
    assert json.loads((final / "splits.json").read_text())["splits"] == \
        json.loads((run / "splits.json").read_text())["splits"]  # the retrain tests on the search's held-out split
    assert (run / "optimization_history.png").is_file()
    assert summary["plots"]["importance"] is None  # one completed trial: no importance, no crash


def test_resume_counts_finished_trials_and_search_never_touches_test(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    touched: set[int] = set()
    getitem = TaskSamples.__getitem__

    def recording(self: TaskSamples, i: int):
        touched.add(self.indices[i])
        return getitem(self, i)

    monkeypatch.setattr(TaskSamples, "__getitem__", recording)
    args = dict(task="seg", labels=16, overrides=[*TINY, LR_ONLY], out=tmp_path / "run", retrain=False)
    first = tune("endoscopy", trials=1, **args)
    again = tune("endoscopy", trials=2, **args)  # same default study + storage: resumes, runs one more
    assert len(again.study.trials) == 2 and first.study.study_name == again.study.study_name
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())["splits"]
    assert touched and touched <= set(splits["labelled"]) and not touched & set(splits["test"])
    with pytest.raises(ValueError, match="made for a different recipe"):
        tune("endoscopy", trials=3, **{**args, "overrides": [*TINY, LR_ONLY, "finetune.epochs=3"]})


def test_bad_storage_fails_before_any_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot open the study database"):
        tune("endoscopy", labels=16, storage=f"sqlite:///{tmp_path}/missing/dir/s.db", overrides=TINY, out=tmp_path / "r")
    with pytest.raises(ValueError, match="expected a database URL"):
        open_storage("study.db")
    assert not (tmp_path / "r").exists()


def test_more_folds_than_labelled_groups_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="10 folds need at least 10 groups"):
        tune("endoscopy", labels=16, overrides=[*TINY, "tune.folds=10"], out=tmp_path / "r")
    assert not (tmp_path / "r" / "trials").exists()


def test_a_programming_error_stops_the_study_instead_of_failing_a_trial(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only divergence, NaN metrics, out-of-memory and unreadable data are a trial's own failure."""

    def shape_bug(self, on_epoch=None):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x192 and 384x2)")

    monkeypatch.setattr(FinetuneTrainer, "fit", shape_bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        tune("endoscopy", labels=16, trials=3, overrides=[*TINY, LR_ONLY], out=tmp_path / "r")
    storage = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'r' / 'study.db'}")
    assert [t.state for t in storage.trials] == [optuna.trial.TrialState.FAIL]  # recorded, then the study stopped
