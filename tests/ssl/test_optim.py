"""Parameter groups, per-parameter gradient clipping and last-layer freezing against straightforward versions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dinomed.models.heads import DINOProjectionHead
from dinomed.ssl.optim import cancel_last_layer_gradients, clip_gradients, param_groups


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, 8))  # like a ViT cls token: 3-D, so decayed (reference)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.head = DINOProjectionHead(8, out_dim=16, hidden_dim=12, bottleneck_dim=6)


def straightforward_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (not_regularized if name.endswith(".bias") or len(param.shape) == 1 else regularized).append(name)
    return regularized, not_regularized


def test_param_groups_split_like_reference() -> None:
    model = _Net()
    groups = param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    regularized, not_regularized = straightforward_groups(model)
    assert [g["regularized"] for g in groups] == [True, False]
    assert [names[id(p)] for p in groups[0]["params"]] == regularized
    assert [names[id(p)] for p in groups[1]["params"]] == not_regularized
    assert groups[1]["weight_decay"] == 0.0
    assert "head.last_layer.parametrizations.weight.original0" not in regularized + not_regularized  # frozen gain
    torch.optim.AdamW(groups)  # valid optimiser groups


def test_param_groups_need_some_trainable_parameter() -> None:
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(frozen)


def test_layer_decay_scales_the_backbone_by_depth_and_leaves_the_head() -> None:
    from dinomed.models.backbones import create_backbone
    from dinomed.ssl.optim import layer_ids

    backbone, _ = create_backbone("vit_tiny_patch16_224", img_size=32)
    student = nn.Module()
    student.backbone, student.head = backbone, nn.Linear(192, 4)
    layers, depth = layer_ids(backbone)
    assert depth == 12 and [layers[n] for n in ("cls_token", "pos_embed", "patch_embed.proj.weight",
                                                "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias", "norm.weight")] \
        == [0, 0, 0, 1, 12, 13]
    nat, _ = create_backbone("nat_mini", img_size=32)  # blocks counted across stages, downsamplers go with the next
    layers, depth = layer_ids(nat)
    assert depth == 3 + 4 + 6 + 5 and layers["levels.1.blocks.0.attn.qkv.weight"] == 4
    assert layers["levels.0.downsample.reduction.weight"] == 4 and layers["norm.weight"] == depth + 1
    assert layers[next(n for n, _ in nat.named_parameters())] == 0
    scale = {id(p): (g["lr_scale"], g["backbone"]) for g in param_groups(student, layer_decay=0.5) for p in g["params"]}
    assert scale[id(backbone.patch_embed.proj.weight)] == (0.5 ** 13, True)
    assert scale[id(backbone.blocks[11].attn.qkv.weight)] == (0.5, True)
    assert scale[id(backbone.norm.weight)] == (1.0, True) and scale[id(student.head.weight)] == (1.0, False)
    assert {g["lr_scale"] for g in param_groups(student)} == {1.0}


def reference_clip(model: nn.Module, clip: float) -> list[float]:
    norms = []
    for p in model.parameters():
        if p.grad is not None:
            norm = p.grad.norm(2)
            norms.append(norm.item())
            coef = clip / (norm + 1e-6)
            if coef < 1:
                p.grad.mul_(coef)
    return norms


def test_clip_gradients_matches_reference() -> None:
    torch.manual_seed(0)
    model = _Net()
    for i, p in enumerate(model.parameters()):
        if p.requires_grad:
            p.grad = torch.randn_like(p) * (0.1 if i % 2 else 10.0)  # some below, some above the clip
    expected_model = copy.deepcopy(model)
    for p, e in zip(model.parameters(), expected_model.parameters()):
        e.grad = None if p.grad is None else p.grad.clone()
    expected = reference_clip(expected_model, 1.0)
    got = clip_gradients(model, 1.0)
    assert got == pytest.approx(expected, rel=1e-6)
    assert any(n < 1.0 for n in got) and any(n > 1.0 for n in got)
    for (name, p), (_, e) in zip(model.named_parameters(), expected_model.named_parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, e.grad, msg=name)
    assert clip_gradients(nn.Linear(2, 2), 1.0) == []


def test_last_layer_gradients_dropped_only_while_frozen() -> None:
    head = DINOProjectionHead(8, out_dim=16, hidden_dim=12, bottleneck_dim=6, norm_last_layer=False)
    head(torch.randn(3, 8)).sum().backward()
    cancel_last_layer_gradients(head, epoch=1, freeze_last_layer=1)
    assert all(p.grad is not None for p in head.parameters())
    cancel_last_layer_gradients(head, epoch=0, freeze_last_layer=1)
    for name, p in head.named_parameters():
        assert (p.grad is None) == ("last_layer" in name), name
    assert any("last_layer" in name for name, _ in head.named_parameters())
