"""Task heads: registry sweep, output shapes at full resolution, depth-bin maths, block selection, metric direction."""

from __future__ import annotations

import pytest
import torch

from dinomed.models.backbones import create_backbone
from dinomed.finetuning.heads import DepthHead, build_head, head_class
from dinomed.models.backbones import FeatureLevels, feature_levels
from dinomed.models.decoders import backbone_features, evenly_spaced_blocks
from dinomed.registry import TASK_HEADS

EXPECTED_SHAPE = {"seg": (2, 3, 48, 64), "depth": (2, 1, 48, 64), "cls": (2, 3)}


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch16_224", img_size=64)[0].eval()


def test_default_blocks_are_evenly_spaced() -> None:
    assert evenly_spaced_blocks(12) == [2, 5, 8, 11]
    assert evenly_spaced_blocks(2) == [0, 1]


@pytest.mark.parametrize("task", ["cls", "depth", "seg"])
def test_every_head_gives_full_resolution_outputs_and_trains(vit, task: str) -> None:
    kwargs = {} if task == "depth" else {"num_classes": 3}
    head = build_head(task, feature_levels(vit), **kwargs)
    assert head.task == task and head.target in ("mask", "depth", "label")
    x = torch.rand(2, 3, 48, 64)  # non-square, patch multiple: dynamic image size
    out = head(backbone_features(vit, x, head.blocks), x)
    assert out.shape == EXPECTED_SHAPE[task]
    out.float().mean().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


def test_features_are_one_pair_per_block(vit) -> None:
    features = backbone_features(vit, torch.rand(1, 3, 64, 64), [2, 5, 8, 11])
    assert len(features) == 4
    assert [tuple(p.shape) for p, _ in features] == [(1, 192, 4, 4)] * 4
    assert [tuple(c.shape) for _, c in features] == [(1, 192)] * 4


def test_depth_is_softmax_weighted_bin_centres() -> None:
    torch.manual_seed(0)
    head = DepthHead(FeatureLevels((8,), (16,)), [0], bins=5, min_depth=1.0, max_depth=5.0).eval()
    features = [(torch.randn(1, 8, 2, 2), torch.randn(1, 8))]
    image = torch.zeros(1, 3, 2, 2)
    depth = head(features, image)
    maps = torch.cat([features[0][0], features[0][1][:, :, None, None].expand(1, 8, 2, 2)], dim=1)
    probs = head.decoder([maps], image).softmax(dim=1)
    expected = (probs * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])[None, :, None, None]).sum(1, keepdim=True)
    torch.testing.assert_close(depth, expected)
    assert depth.min() >= 1.0 and depth.max() <= 5.0


def test_bad_head_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'box'; valid tasks are \[.*'cls', 'depth', 'seg'"):
        build_head("box", FeatureLevels((192,) * 12, (16,) * 12))
    with pytest.raises(ValueError, match=r"head blocks \[12\] out of range .* 12 blocks"):
        build_head("seg", FeatureLevels((192,) * 12, (16,) * 12), blocks=[11, 12])
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        build_head("depth", FeatureLevels((192,) * 12, (16,) * 12), min_depth=5.0, max_depth=1.0)


def test_built_in_heads_are_registered_with_their_metric_direction() -> None:
    assert {"cls", "depth", "seg"} <= set(TASK_HEADS.names())
    seg, depth, cls = head_class("seg"), head_class("depth"), head_class("cls")
    assert (seg.primary_metric, depth.primary_metric, cls.primary_metric) == ("dice", "abs_rel", "balanced_accuracy")
    assert seg.is_better(0.6, 0.5) and not depth.is_better(0.6, 0.5) and depth.is_better(0.1, None)
    assert not cls.is_better(float("nan"), 0.1)


@pytest.mark.parametrize("task", ["seg", "depth"])
@pytest.mark.parametrize("detail", [None, 3])
def test_dpt_heads_give_full_resolution_and_train_their_detail_branch(vit, task: str, detail) -> None:
    kwargs = {"bins": 8} if task == "depth" else {"num_classes": 3}
    head = build_head(task, feature_levels(vit), decoder="dpt", detail=detail, hidden=32, **kwargs)
    x = torch.rand(2, 3, 48, 80)
    out = head(backbone_features(vit, x, head.blocks), x)
    assert out.shape == ((2, 1, 48, 80) if task == "depth" else (2, 3, 48, 80))
    out.float().mean().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    branch = [n for n, _ in head.named_parameters() if "detail" in n]
    assert bool(branch) == (detail is not None)


def test_the_detail_branch_needs_the_dpt_decoder() -> None:
    levels = FeatureLevels((192,) * 12, (16,) * 12)
    with pytest.raises(ValueError, match="detail branch joins DPT's fusion steps"):
        build_head("seg", levels, decoder="fusion", detail=3)
    with pytest.raises(ValueError, match=r"unknown decoder 'unet'; valid decoders are \['fusion', 'dpt'\]"):
        build_head("seg", levels, decoder="unet")
