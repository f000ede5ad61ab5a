"""NAT / DiNAT through every path a ViT takes: DINO pretraining, kNN evaluation, LoRA fine-tuning on its stage maps,
saving, loading, merging, prediction and the attention view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from rich.console import Console

import dinomed
from dinomed.eval.attention import last_block_attention

QUIET = Console(quiet=True)
PRETRAIN = {"model.arch": "nat_mini", "model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16,
            "augment.global_size": 32, "augment.local_size": 16, "augment.local_crops": 2, "data.phantom.count": 32,
            "data.phantom.size": [48, 48], "data.num_workers": 0, "train.batch_size": 8, "train.epochs": 2,
            "train.log_every": 1, "train.probe_every": 2, "train.probe_images": 16}


@pytest.fixture(scope="module")
def nat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nat")
    return dinomed.pretrain("thermal", quick=True, console=QUIET, overrides={
        **PRETRAIN, "train.output_dir": str(out), "train.run_name": "nat"}).run_dir


def test_dino_pretrains_a_nat_and_exports_it(nat_run: Path) -> None:
    summary = dinomed.load_recipe(nat_run / "config.yaml")
    assert summary.model.arch == "nat_mini"
    backbone = dinomed.load_backbone(nat_run).eval()
    plain = timm.create_model("nat_mini", pretrained=False, num_classes=0, in_chans=1).eval()
    plain.load_state_dict(backbone.state_dict())
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert backbone(x).shape == (2, 512) and torch.allclose(backbone(x), plain(x), atol=1e-6)
    result = dinomed.knn_eval(backbone=nat_run, console=QUIET, overrides={"eval.cache_dir": str(nat_run / "cache")})
    assert 0.0 <= result.metrics["test"]["balanced_accuracy"] <= 1.0


def test_lora_on_nat_stage_maps_trains_saves_merges_and_predicts(nat_run: Path, tmp_path: Path) -> None:
    run = dinomed.finetune("thermal", task="seg", backbone=nat_run, labels=0.5, out=tmp_path / "seg", console=QUIET,
                           overrides=["finetune.image_size=64", "finetune.epochs=1", "finetune.batch_size=4",
                                      "data.phantom.count=24", "data.phantom.size=[64,64]", "data.num_workers=0"])
    assert run.metrics["parameters"]["trainable"] < run.metrics["parameters"]["total"] / 5
    model = dinomed.load_model(run.run_dir)
    assert model.head.strides == [4, 8, 16, 32] and model.head.dims == [64, 128, 256, 512]
    image = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    assert model.predict(image).shape == (64, 64)
    merged = dinomed.load_backbone(dinomed.merge(run.run_dir, tmp_path / "merged", console=QUIET)).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), model.vit(x), atol=1e-5, rtol=0)


def test_the_nat_attention_view_is_the_attention_each_position_receives(nat_run: Path) -> None:
    backbone = dinomed.load_backbone(nat_run)
    maps = last_block_attention(backbone, torch.rand(2, 1, 256, 256))
    assert maps.shape == (2, 16, 8, 8)  # stage 4 of a 256-px input, 16 heads
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.full((2, 16), 64.0))  # every query gives away 1
