"""Quick-profile runs learn: a tiny run optimises the DINO objective without collapsing (natural-shapes phantom),
and the README demo (OCT phantom) beats the same ViT at random init in kNN on held-out patients, which its own
verdict (the online probes, ``dinomed.ssl.probes``) also says.

The demo is the smallest run whose kNN gain is consistent: 128-step runs were within seed noise of random init
(README, "Does the demo learn?"). ``benchmarks/bench_pretrain.py`` reports the same comparison as a table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomed.data.phantoms import GROUP_SIZE, PhantomDataset
from dinomed.api import knn_eval, pretrain
from dinomed.recipe import load_recipe
from dinomed.engine import read_metrics

TINY_RUN = [
    "data.phantom.size=[64,64]", "data.phantom.count=512", "data.num_workers=0",
    "augment.global_size=64", "augment.local_size=32", "augment.local_crops=2", "train.epochs=4", "train.log_every=4",
]


@pytest.mark.slow
def test_tiny_quick_run_lowers_the_loss_and_stays_healthy(tmp_path: Path) -> None:
    run = pretrain("endoscopy", overrides=["modality=natural", *TINY_RUN, f"train.output_dir={tmp_path}", "train.run_name=learn"], quick=True)
    records = [r for r in read_metrics(run.run_dir / "metrics.jsonl") if "loss" in r]  # not the step-0 probe
    losses = [r["loss"] for r in records]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    assert run.metrics["collapse"] == "healthy", run.metrics
    last = records[-1]
    assert last["teacher_entropy"] < last["log_k"] - 0.1  # sharpening keeps the teacher away from uniform


@pytest.mark.slow
def test_demo_pretrain_beats_random_init_in_knn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINOMED_CACHE_DIR", str(tmp_path / "features"))
    run = pretrain("oct", overrides=[f"train.output_dir={tmp_path}", "train.run_name=demo"], quick=True)
    bank, test = 64 * GROUP_SIZE, 32 * GROUP_SIZE  # whole patients of another generator seed: never seen in the run
    size = tuple(load_recipe(run.run_dir / "config.yaml").data.phantom.size)
    held_out = PhantomDataset("oct", bank + test, size, seed=101)
    splits = {"train": list(range(bank)), "test": list(range(bank, bank + test))}
    pretrained = knn_eval(backbone=run.run_dir, dataset=held_out, splits=splits).metrics["test"]["top1"]
    random_init = knn_eval(run.run_dir / "config.yaml", backbone="random", dataset=held_out, splits=splits).metrics["test"]["top1"]
    assert pretrained > random_init + 0.04, (pretrained, random_init)
    assert run.metrics["verdict"] == "learning", run.metrics  # the online probes agree with the held-out kNN
