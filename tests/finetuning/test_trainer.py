"""The fine-tuning loop: an interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dinomed.api import finetune
from dinomed.finetuning.trainer import FinetuneTrainer


def _final(run: Path) -> tuple[dict, dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: metrics[k] for k in ("val", "test", "best_epoch", "epochs", "steps")}, load_file(run / "model" / "head.safetensors")


def test_resume_after_a_kill_reaches_the_same_final_state(tmp_path: Path, tiny: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = [*tiny, "finetune.epochs=3", "finetune.patience=5"]
    whole = finetune("endoscopy", task="seg", labels=0.5, overrides=overrides, out=tmp_path / "whole").run_dir

    original, calls = FinetuneTrainer.train_epoch, []

    def killed_in_epoch_two(self, progress, task, stop):  # the process dies after epoch 1's checkpoint was written
        calls.append(self.epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, progress, task, stop)

    monkeypatch.setattr(FinetuneTrainer, "train_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune("endoscopy", task="seg", labels=0.5, overrides=overrides, out=tmp_path / "killed")
    monkeypatch.setattr(FinetuneTrainer, "train_epoch", original)
    killed = tmp_path / "killed"
    assert not (killed / "metrics.json").exists() and len((killed / "metrics.jsonl").read_text().splitlines()) == 1

    finetune(resume=killed)
    (metrics_a, head_a), (metrics_b, head_b) = _final(whole), _final(killed)
    assert metrics_a == metrics_b
    assert head_a.keys() == head_b.keys() and all((head_a[k] == head_b[k]).all() for k in head_a)
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 3


def test_augmentation_changes_training_but_not_evaluation(tmp_path: Path, tiny: list[str]) -> None:
    """Paired augmentation is on by default; switching it off gives another model on the same splits."""
    plain = finetune("oct", task="seg", overrides=[*tiny, "finetune.augment=false"], out=tmp_path / "plain")
    augmented = finetune("oct", task="seg", overrides=tiny, out=tmp_path / "augmented")
    assert (plain.run_dir / "splits.json").read_text() == (augmented.run_dir / "splits.json").read_text()
    assert plain.metrics["val"] != augmented.metrics["val"]


def test_resume_refuses_changes_to_the_optimisation(tmp_path: Path, tiny: list[str]) -> None:
    run = finetune("endoscopy", task="seg", overrides=[*tiny, "finetune.epochs=1"], out=tmp_path / "run").run_dir
    with pytest.raises(Exception, match="cannot change this when resuming"):
        finetune(resume=run, overrides=["finetune.lr=0.1"])


def test_time_budget_stops_training_after_a_validated_epoch(tmp_path: Path, tiny: list[str]) -> None:
    run = finetune("endoscopy", task="seg", out=tmp_path / "run",
                   overrides=[*tiny, "finetune.epochs=50", "finetune.max_minutes=0.0001"])
    assert run.metrics["epochs"] == 1 and run.metrics["steps"] == 1 and run.metrics["best_epoch"] == 1


def test_val_every_validates_every_nth_epoch_and_the_last(tmp_path: Path, tiny: list[str]) -> None:
    run = finetune("endoscopy", task="seg", out=tmp_path / "run",
                   overrides=[*tiny, "finetune.epochs=5", "finetune.val_every=2", "finetune.patience=10"])
    records = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in records if "val_dice" in r] == [2, 4, 5]
    assert run.metrics["epochs"] == 5 and run.metrics["best_epoch"] in (2, 4, 5)
