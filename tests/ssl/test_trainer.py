"""Pretraining loop: learns, resumes on the identical path, keeps the last good checkpoint, exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

from dinomed.models.backbones import load_backbone
from dinomed.api import pretrain
from dinomed.engine import TrainingDiverged, load_checkpoint, read_metrics
from dinomed.ssl.trainer import CHECKPOINT

TINY = [
    "model.out_dim=256", "model.hidden_dim=64", "model.bottleneck_dim=32",
    "augment.global_size=32", "augment.local_size=16", "augment.local_crops=2",
    "data.phantom.count=32", "data.phantom.size=[48,48]", "data.num_workers=0",
    "train.batch_size=8", "train.epochs=2", "train.log_every=1", "train.checkpoint_every=2",
]
SCHEDULE_KEYS = ("lr", "wd", "momentum", "teacher_temp")


def _tiny(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [*TINY, f"train.output_dir={tmp_path}", f"train.run_name={name}", *extra]


def test_run_dir_holds_config_metrics_checkpoint_and_export(tmp_path: Path) -> None:
    run = pretrain("oct", overrides=_tiny(tmp_path, "full"), quick=True)
    assert run.metrics["finished"] and run.metrics["step"] == 8
    for name in ("config.yaml", "metrics.jsonl", CHECKPOINT, "summary.json", "export/backbone.json"):
        assert (run.run_dir / name).is_file(), name
    start, *records = read_metrics(run.run_dir / "metrics.jsonl")
    assert start["step"] == 0 and {"rankme", "rankme_random", "knn", "knn_random"} <= set(start)  # phantom labels
    assert [r["step"] for r in records] == list(range(1, 9))
    for key in ("loss", "teacher_entropy", "kl", "teacher_std", "img_per_s", "data_wait", *SCHEDULE_KEYS):
        assert all(isinstance(r[key], float) for r in records), key
    assert 0.0 <= records[-1]["data_wait"] <= 1.0 and "rankme" in records[-1]  # the last step is always probed
    assert run.metrics["verdict"] in ("learning", "not learning") and run.metrics["collapse"] == "healthy"
    state = load_checkpoint(run.run_dir / CHECKPOINT)
    assert state["step"] == 8 and {"student", "teacher", "optimizer", "loss", "rng"} <= set(state)
    # the export loads through dinomed and through plain timm, and equals the teacher backbone
    backbone = load_backbone(run.run_dir).eval()
    spec = json.loads((run.run_dir / "export/backbone.json").read_text())
    plain = timm.create_model(spec["arch"], pretrained=False, **spec["kwargs"]).eval()
    plain.load_state_dict(backbone.state_dict())
    x = torch.randn(2, 1, 32, 32)
    run.backbone.eval()
    assert torch.allclose(backbone(x), run.backbone(x), atol=1e-6)
    assert torch.allclose(plain(x), run.backbone(x), atol=1e-6)


def test_resume_follows_the_uninterrupted_path(tmp_path: Path) -> None:
    full = pretrain("oct", overrides=_tiny(tmp_path, "a"), quick=True)
    pretrain("oct", overrides=_tiny(tmp_path, "b", "train.max_steps=3"), quick=True)
    resumed = pretrain(resume=tmp_path / "b", overrides=["train.max_steps=null"])
    assert resumed.metrics["step"] == full.metrics["step"] == 8
    a, b = read_metrics(full.run_dir / "metrics.jsonl"), read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["step"] for r in b] == [r["step"] for r in a]
    for ra, rb in zip(a[1:], b[1:]):
        for key in SCHEDULE_KEYS:
            assert ra[key] == rb[key], (ra["step"], key)
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-5), ra["step"]
    probed = [(ra, rb) for ra, rb in zip(a, b) if "rankme" in ra]
    assert len(probed) >= 2 and all("rankme" in rb for _, rb in probed)  # (b also probed where it stopped at 3)
    for ra, rb in probed:  # the probes resume on the same steps, with the same reference values
        assert rb["rankme"] == pytest.approx(ra["rankme"], rel=1e-4) and rb["rankme_random"] == ra["rankme_random"]


def test_resume_refuses_changing_the_run(tmp_path: Path) -> None:
    pretrain("oct", overrides=_tiny(tmp_path, "c", "train.max_steps=2"), quick=True)
    with pytest.raises(ValueError, match="key 'optim.lr': cannot change this when resuming"):
        pretrain(resume=tmp_path / "c", overrides=["optim.lr=1.0"])


def _poison_step_three(monkeypatch: pytest.MonkeyPatch) -> None:
    from dinomed.ssl import trainer as trainer_module

    original = trainer_module.DINOLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(trainer_module.DINOLoss, "forward", poisoned)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_step_three(monkeypatch)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 3.*last good checkpoint kept"):
        pretrain("oct", overrides=_tiny(tmp_path, "d"), quick=True)
    assert load_checkpoint(tmp_path / "d" / CHECKPOINT)["step"] == 2


def test_the_cli_reports_a_diverged_run_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from dinomed.cli import main

    _poison_step_three(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--recipe", "oct", "--quick", *[f"--set={s}" for s in _tiny(tmp_path, "cli")]])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert err.startswith("error: training diverged: loss is nan at step 3") and "last.pt" in err.replace("\n", "")


def test_bf16_on_the_cpu_follows_fp32_and_fp16_needs_cuda(tmp_path: Path) -> None:
    fp32 = pretrain("oct", overrides=_tiny(tmp_path, "fp32", "train.max_steps=4", "train.precision=fp32"), quick=True)
    bf16 = pretrain("oct", overrides=_tiny(tmp_path, "bf16", "train.max_steps=4", "train.precision=bf16"), quick=True)
    losses = lambda run: [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if "loss" in r]  # noqa: E731
    assert losses(bf16) == pytest.approx(losses(fp32), rel=2e-2)  # bf16 keeps 8 mantissa bits; the loss stays fp32
    assert losses(bf16) != losses(fp32)  # bf16 autocast really ran
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="precision fp16 needs a CUDA device"):
            pretrain("oct", overrides=_tiny(tmp_path, "fp16", "train.precision=fp16"), quick=True)


def test_interrupt_saves_and_resume_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dinomed.ssl import trainer as trainer_module

    original = trainer_module.DINOTrainer.train_step

    def interrupted(self, crops):
        out = original(self, crops)
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does
        return out

    monkeypatch.setattr(trainer_module.DINOTrainer, "train_step", interrupted)
    run = pretrain("oct", overrides=_tiny(tmp_path, "e"), quick=True)
    assert not run.metrics["finished"] and load_checkpoint(run.run_dir / CHECKPOINT)["step"] == 3
    monkeypatch.setattr(trainer_module.DINOTrainer, "train_step", original)
    assert pretrain(resume=run.run_dir).metrics["step"] == 8


@pytest.mark.slow
def test_kill_dash_nine_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """The issue's acceptance test, through the CLI: SIGKILL after the first checkpoint, then --resume."""
    args = [sys.executable, "-m", "dinomed", "pretrain", "--recipe", "oct", "--quick"]
    sets = [x for item in _tiny(tmp_path, "killed", "train.epochs=4") for x in ("--set", item)]
    proc = subprocess.Popen(args + sets, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    resumed = subprocess.run([sys.executable, "-m", "dinomed", "pretrain", "--resume", str(tmp_path / "killed")],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    full = pretrain("oct", overrides=_tiny(tmp_path, "whole", "train.epochs=4"), quick=True)
    a = [r for r in read_metrics(full.run_dir / "metrics.jsonl") if "loss" in r]
    b = [r for r in read_metrics(tmp_path / "killed" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in b] == [r["step"] for r in a] and b[-1]["step"] == 16
    for ra, rb in zip(a, b):
        assert all(ra[k] == rb[k] for k in SCHEDULE_KEYS)
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-5)
