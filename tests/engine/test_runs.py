"""Run directories: never over an existing run, nothing left behind by a run that could not start, resume rules."""

from __future__ import annotations

import pytest

from dinomed.config import ConfigError
from dinomed.engine import CONFIG_FILE, MetricsLog, check_resumable, new_run_dir, read_metrics


def test_a_new_run_dir_refuses_an_existing_run(tmp_path) -> None:
    with new_run_dir(tmp_path, "run") as run_dir:
        (run_dir / CONFIG_FILE).write_text("name: x\n")
    with pytest.raises(FileExistsError, match="already holds a run; use --resume"):
        with new_run_dir(tmp_path, "run"):
            pass


def test_a_failed_start_leaves_nothing_behind(tmp_path) -> None:
    with pytest.raises(ValueError):
        with new_run_dir(tmp_path, "fresh") as run_dir:
            (run_dir / "splits.json").write_text("{}")
            raise ValueError("bad data")
    assert not (tmp_path / "fresh").exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        with new_run_dir(tmp_path, "existing") as run_dir:
            (run_dir / "splits.json").write_text("{}")
            raise ValueError("bad data")
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]  # the user's file stays, ours is gone


def test_resume_allows_only_settings_that_keep_the_path() -> None:
    check_resumable(["train.device", "data.num_workers"])
    with pytest.raises(ConfigError, match="key 'optim.lr': cannot change this when resuming.*allowed: train.device"):
        check_resumable(["train.device", "optim.lr"])
    check_resumable(["train.max_steps"], ["train.max_steps"])


def test_metrics_log_drops_records_after_the_resumed_step(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": float("nan") if step == 30 else 1.0})
    with open(path, "a") as handle:
        handle.write('{"step": 40, "lo')  # killed mid-line
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 30] and read_metrics(path)[-1]["loss"] == "nan"
    MetricsLog(path, resume_step=20)
    assert [r["step"] for r in read_metrics(path)] == [10, 20]
