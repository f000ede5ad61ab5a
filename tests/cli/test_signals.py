"""SIGTERM (what ``timeout``, ``kill`` and job schedulers send, to the whole process group) stops pretraining,
fine-tuning and tuning like Ctrl-C: checkpoint, one line, exit status 143, no traceback, and the run continues
exactly. DataLoader workers run (``data.num_workers=2``), since they once died of the signal first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = ["model.out_dim=256", "model.hidden_dim=64", "model.bottleneck_dim=32", "augment.global_size=32",
        "augment.local_size=16", "augment.local_crops=2", "data.phantom.count=64", "data.phantom.size=[48,48]",
        "data.num_workers=2", "train.batch_size=8", "train.log_every=1", "train.checkpoint_every=2",
        "train.probe_every=0", "train.num_threads=1"]
FINETUNE = ["model.arch=vit_tiny_patch16_224", "finetune.image_size=32", "finetune.batch_size=4",
            "data.phantom.count=64", "data.phantom.size=[32,32]", "data.num_workers=2", "train.num_threads=1"]


def _terminate_when(command: list[str], ready: Callable[[], bool]) -> subprocess.CompletedProcess:
    """Run ``command`` and send SIGTERM to its process group once ``ready()``; returns what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "dinomed", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 300
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dinomed", *command], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _losses(metrics: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]


def test_sigterm_stops_pretraining_cleanly_and_resume_continues(tmp_path: Path) -> None:
    sets = lambda name: [f"--set={s}" for s in (*TINY, "train.epochs=3", f"train.output_dir={tmp_path}",  # noqa: E731
                                                f"train.run_name={name}")]
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.pt"
    done = _terminate_when(["pretrain", "--recipe", "oct", "--quick", *sets("stopped")], ckpt.exists)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Interrupted at step" in done.stdout and "--resume" in done.stdout
    _run(["pretrain", "--resume", str(tmp_path / "stopped")])
    _run(["pretrain", "--recipe", "oct", "--quick", *sets("whole")])
    resumed, whole = _losses(tmp_path / "stopped" / "metrics.jsonl"), _losses(tmp_path / "whole" / "metrics.jsonl")
    assert [s for s, _ in resumed] == [s for s, _ in whole] == list(range(1, 25))
    assert [l for _, l in resumed] == pytest.approx([l for _, l in whole], rel=1e-4, abs=1e-5)


def test_sigterm_stops_finetuning_mid_epoch_and_resume_continues(tmp_path: Path) -> None:
    sets = [f"--set={s}" for s in (*FINETUNE, "finetune.epochs=4", "finetune.patience=10")]
    log = tmp_path / "stopped" / "metrics.jsonl"
    done = _terminate_when(["finetune", "--recipe", "endoscopy", "--task", "seg", "--labels", "0.5",
                            "--out", str(tmp_path / "stopped"), *sets], log.exists)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Interrupted at epoch" in done.stdout
    _run(["finetune", "--resume", str(tmp_path / "stopped")])
    _run(["finetune", "--recipe", "endoscopy", "--task", "seg", "--labels", "0.5", "--out", str(tmp_path / "whole"),
          *sets])
    final = lambda run: {k: v for k, v in json.loads((tmp_path / run / "metrics.json").read_text()).items()  # noqa: E731
                         if k in ("val", "test", "steps", "epochs", "best_epoch")}
    assert final("stopped") == final("whole")  # the resumed run repeats the uninterrupted one exactly


def test_sigterm_stops_tuning_and_the_same_command_resumes(tmp_path: Path) -> None:
    command = ["tune", "--recipe", "endoscopy", "--task", "seg", "--labels", "16", "--trials", "2",
               "--out", str(tmp_path / "tune"), "--no-retrain",
               *[f"--set={s}" for s in (*FINETUNE, "finetune.epochs=2", "tune.folds=2",
                                        "tune.space={lr: {low: 1.0e-4, high: 1.0e-2, log: true}}")]]
    trials = tmp_path / "tune" / "trials"
    done = _terminate_when(command, lambda: any(trials.glob("*/fold0/metrics.jsonl")))
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Interrupted: study" in done.stdout and "rerun the same command" in done.stdout
    again = _run(command)
    assert "2 finished trial(s)" in again.stdout or "Done:" in again.stdout
