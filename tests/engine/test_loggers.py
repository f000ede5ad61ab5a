"""TensorBoard logging: the same scalars as metrics.jsonl, through TensorBoard's own writer; hints without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

import dinomed
from dinomed.config import ConfigError
from dinomed.engine import read_metrics
from dinomed.extras import MissingExtra

pytest.importorskip("tensorboard", reason='live logging needs the tensorboard extra: pip install "dinomed[tensorboard]"')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TINY = {"model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16, "augment.global_size": 32,
        "augment.local_size": 16, "augment.local_crops": 2, "data.phantom.count": 32, "data.phantom.size": [48, 48],
        "data.num_workers": 0, "train.batch_size": 8, "train.epochs": 2, "train.log_every": 1,
        "train.probe_every": 2, "train.probe_images": 16, "train.loggers": ["tensorboard"]}


def _scalars(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def test_pretraining_curves_reach_tensorboard(tmp_path: Path) -> None:
    run = dinomed.pretrain("oct", quick=True, console=Console(quiet=True),
                           overrides={**TINY, "train.output_dir": str(tmp_path), "train.run_name": "tb"})
    events = _scalars(run.run_dir)
    logged = {e.step: e.value for e in events.Scalars("pretrain/loss")}
    written = {r["step"]: r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if "loss" in r}
    assert logged.keys() == written.keys() and all(abs(logged[s] - written[s]) < 1e-6 for s in written)
    tags = set(events.Tags()["scalars"])
    assert {"pretrain/lr", "pretrain/teacher_temp", "pretrain/teacher_entropy", "pretrain/img_per_s",
            "pretrain/rankme", "pretrain/rankme_random"} <= tags


def test_fine_tuning_validation_reaches_tensorboard(tmp_path: Path, ) -> None:
    run = dinomed.finetune("endoscopy", task="seg", labels=0.5, out=tmp_path / "seg", console=Console(quiet=True),
                           overrides=["finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4",
                                      "data.phantom.count=24", "data.phantom.size=[32,32]", "data.num_workers=0",
                                      "model.arch=vit_tiny_patch16_224", "train.loggers=[tensorboard]"])
    assert [e.step for e in _scalars(run.run_dir).Scalars("finetune/val_dice")] == [r["step"] for r in
                                                                                     read_metrics(run.run_dir / "metrics.jsonl")]


def test_unknown_logger_and_missing_extra_are_one_line_hints(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"key 'train.loggers': expected one of \['tensorboard'\], got 'wandb'"):
        dinomed.load_recipe("oct", overrides={"train.loggers": ["wandb"]})
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingExtra, match=r'train.loggers: \[tensorboard\] needs the tensorboard extra: pip install '
                                           r'"dinomed\[tensorboard\]"'):
        dinomed.pretrain("oct", quick=True, console=Console(quiet=True),
                         overrides={**TINY, "train.output_dir": str(tmp_path), "train.run_name": "none"})
    assert not (tmp_path / "none").exists()
