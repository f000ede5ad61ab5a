"""A tiny quick-profile run optimises the DINO objective without collapsing (natural-shapes phantom).

Whether its features beat random init in kNN is a benchmark question (``benchmarks/bench_pretrain.py``): on a
CPU-minute budget they do not yet, see the README's Benchmarks section.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomed.runs import read_metrics
from dinomed.ssl.trainer import pretrain

TINY_RUN = [
    "data.phantom.size=[64,64]", "data.phantom.count=512", "data.num_workers=0",
    "augment.global_size=64", "augment.local_size=32", "augment.local_crops=2", "train.epochs=4", "train.log_every=4",
]


@pytest.mark.slow
def test_tiny_quick_run_lowers_the_loss_and_stays_healthy(tmp_path: Path) -> None:
    run = pretrain("endoscopy", ["modality=natural", *TINY_RUN, f"train.output_dir={tmp_path}", "train.run_name=learn"], quick=True)
    records = read_metrics(run.run_dir / "metrics.jsonl")
    losses = [r["loss"] for r in records]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    assert run.metrics["verdict"] == "healthy", run.metrics
    last = records[-1]
    assert last["teacher_entropy"] < last["log_k"] - 0.1  # sharpening keeps the teacher away from uniform
