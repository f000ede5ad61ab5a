"""Is it learning? RankMe / CKA against their formulas, the verdict on synthetic records, and real tiny runs on the
OCT phantom (labels and masks, so every probe runs): a run that cannot learn (lr 0: the random init itself), a
deliberately collapsed one (no centring, a sharp teacher, a high lr) and the early stop on a hopeless run.

That a run which does learn is called "learning" is checked on the README demo (slow, ``test_learning.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

import dinomed
from dinomed.engine import read_metrics
from dinomed.ssl.probes import (
    LEARNING,
    MARGINS,
    NOT_LEARNING,
    UNKNOWN,
    is_forgetting,
    linear_cka,
    quality_line,
    quality_verdict,
    rankme,
)

TINY = {"model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16, "augment.local_crops": 2,
        "augment.local_size": 16, "augment.global_size": 32, "data.phantom.count": 32, "data.phantom.size": [48, 48],
        "data.num_workers": 0, "train.batch_size": 8, "train.epochs": 6, "train.log_every": 1, "train.probe_every": 2,
        "train.probe_images": 32, "train.num_threads": 1, "optim.warmup_epochs": 1}
# The textbook DINO collapse: no centring (the centre stays 0) and a sharp teacher, pushed by a high lr.
COLLAPSE = {"dino.center_momentum": 1.0, "dino.teacher_temp": 0.01, "dino.warmup_teacher_temp": 0.01,
            "dino.koleo_weight": 0, "optim.lr": 0.05}


def _run(tmp_path: Path, name: str, **extra) -> dinomed.PretrainResult:
    overrides = {**TINY, "train.output_dir": str(tmp_path), "train.run_name": name, **extra}
    return dinomed.pretrain("oct", quick=True, overrides=overrides, console=Console(quiet=True))


def test_rankme_counts_the_directions_used() -> None:
    basis = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))[0]
    assert rankme(basis[:, :16] * 3.0) == pytest.approx(16, rel=1e-3)  # 16 equal singular values
    assert rankme(torch.randn(64, 1) @ torch.randn(1, 32)) == pytest.approx(1, abs=0.01)  # rank one
    assert rankme(torch.randn(256, 8)) < 8 + 1e-6


def test_linear_cka_is_invariant_to_rotation_and_scale_only() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 16, generator=generator)
    rotation = torch.linalg.qr(torch.randn(16, 16, generator=generator))[0]
    assert linear_cka(x, 5.0 * x @ rotation + 2.0) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(128, 16, generator=generator)) < 0.3


def _record(step: int, **values: float) -> dict[str, float]:
    return {"step": step, "loss": 5.0, **values}


def test_the_verdict_reads_label_probes_first_and_only_after_the_warm_up() -> None:
    margin = MARGINS["knn"]
    better = _record(20, rankme=10, rankme_random=30, knn=0.6 + 2 * margin, knn_random=0.6)
    same = _record(20, rankme=60, rankme_random=30, knn=0.6 + margin / 2, knn_random=0.6)
    assert quality_verdict([better])[0] == LEARNING  # kNN decides, even with a RankMe below random
    verdict, evidence = quality_verdict([same])
    assert verdict == NOT_LEARNING and "knn 0.61 (rand 0.60)" in evidence and str(margin) in evidence
    assert quality_verdict([better], after_step=20)[0] == UNKNOWN  # nothing after the warm-up yet
    assert quality_verdict([better, same])[0] == NOT_LEARNING  # the last probe counts
    label_free = _record(5, rankme=31, rankme_random=30)
    assert quality_verdict([label_free])[0] == NOT_LEARNING  # RankMe within its 5 % relative margin
    assert quality_verdict([_record(5, rankme=40, rankme_random=30)])[0] == LEARNING


def test_forgetting_warns_only_while_the_loss_is_still_high() -> None:
    drifting = {"step": 9, "loss": 9.5, "cka_init": 0.3}
    assert "CKA to the init features 0.30" in is_forgetting(drifting, first_loss=10.0)
    assert is_forgetting({**drifting, "loss": 5.0}, first_loss=10.0) is None
    assert is_forgetting({**drifting, "cka_init": 0.9}, first_loss=10.0) is None
    assert "cka-init 0.30" in quality_line(drifting)


def test_a_run_that_cannot_learn_is_not_learning(tmp_path: Path) -> None:
    run = _run(tmp_path, "frozen", **{"optim.lr": 0.0})
    records = read_metrics(run.run_dir / "metrics.jsonl")
    probed = [r for r in records if "rankme" in r]
    assert probed[0]["step"] == 0 and probed[-1]["step"] == run.metrics["last_step"]
    assert {"rankme", "rankme_random", "knn", "knn_random", "jaccard", "jaccard_random"} <= set(probed[-1])
    assert all(math.isclose(r["knn"], r["knn_random"]) for r in probed)  # lr 0: the teacher is the random init
    assert run.metrics["collapse"] == "healthy" and run.metrics["verdict"] == NOT_LEARNING
    assert "no probe beats random init" in run.metrics["quality_detail"]
    assert run.metrics["stopped_not_learning"] is False and run.metrics["finished"]


def test_stop_when_not_learning_stops_after_the_warm_up_and_exports(tmp_path: Path) -> None:
    run = _run(tmp_path, "hopeless", **{"optim.lr": 0.0, "train.stop_when_not_learning": True})
    steps_per_epoch = 32 // 8
    assert run.metrics["stopped_not_learning"] is True and not run.metrics["finished"]
    assert steps_per_epoch < run.metrics["step"] < run.metrics["last_step"]  # judged only after the warm-up epoch
    assert Path(run.metrics["backbone"]).is_file() and run.metrics["verdict"] == NOT_LEARNING


def test_a_collapsed_run_is_called_collapsed_in_summary_and_report(tmp_path: Path) -> None:
    run = _run(tmp_path, "collapsed", **COLLAPSE)
    assert run.metrics["verdict"] == "collapsed" and run.metrics["collapse"] != "healthy"
    last = [r for r in read_metrics(run.run_dir / "metrics.jsonl") if "rankme" in r][-1]
    assert last["rankme"] < 0.75 * last["rankme_random"]  # the probes see it too: fewer directions used
    report = dinomed.build_report(run.run_dir, console=Console(quiet=True))
    assert "quality" in report.present and "verdict: collapsed" in report.path.read_text(encoding="utf-8")
