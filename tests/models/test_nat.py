"""Neighbourhood attention against its dense NATTEN-formula reference, and the NAT backbone's timm interface."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from dinomed.models import nat
from dinomed.models.nat import (
    NAT,
    NeighborhoodAttention2D,
    neighborhood_attention,
    neighborhood_attention_reference,
    neighborhood_keys,
)

# fp32: the tiled fast path and the dense reference sum in different orders (observed max difference 7e-6).
ATOL = RTOL = 1e-5


def _qkv_rpb(height: int, width: int, heads: int, table: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(height * 100 + width)
    q, k, v = (torch.randn(2, heads, height, width, 8, generator=gen, dtype=dtype).requires_grad_() for _ in range(3))
    rpb = torch.randn(heads, table, table, generator=gen, dtype=dtype).requires_grad_()
    return q, k, v, rpb


def _assert_paths_agree(height, width, kernel, dilation, heads, table, dtype=torch.float32, tol=ATOL) -> None:
    q, k, v, rpb = _qkv_rpb(height, width, heads, table, dtype)
    fast = neighborhood_attention(q, k, v, kernel, dilation, rpb)
    ref = neighborhood_attention_reference(q, k, v, kernel, dilation, rpb)
    torch.testing.assert_close(fast, ref, atol=tol, rtol=tol)
    upstream = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, (q, k, v, rpb), upstream)
    grads_ref = torch.autograd.grad(ref, (q, k, v, rpb), upstream)
    for name, a, b in zip("qkv", grads_fast, grads_ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, n=name: f"grad {n}: {m}")
    torch.testing.assert_close(grads_fast[3], grads_ref[3], atol=tol, rtol=tol, msg=lambda m: f"grad rpb: {m}")


@pytest.mark.parametrize(
    ("height", "width", "kernel", "dilation", "heads"),
    [
        (9, 13, 7, 1, 2),  # borders everywhere, non-square, two tiles per axis
        (20, 19, 5, 1, 1),  # three tiles per axis
        (6, 11, 3, 1, 2),
        (9, 13, 3, 2, 2),
        (20, 19, 5, 2, 2),  # ragged sub-grids: 19 = 10 + 9
        (9, 13, 3, 3, 3),
        (15, 16, 5, 3, 2),  # height == kernel * dilation
        (7, 7, 7, 1, 2),  # map == kernel: every query sees the whole map
        (14, 21, 7, 2, 1),  # height == kernel * dilation with dilation
        (17, 12, 3, 4, 2),
    ],
)
def test_fast_path_matches_reference_forward_and_backward(height, width, kernel, dilation, heads) -> None:
    _assert_paths_agree(height, width, kernel, dilation, heads, 2 * kernel - 1)


def test_fast_path_is_exact_in_float64() -> None:
    _assert_paths_agree(20, 19, 5, 2, 2, 9, dtype=torch.float64, tol=1e-12)


def test_chunked_tiles_match_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large maps are processed a few tiles at a time; here one tile per chunk."""
    monkeypatch.setattr(nat, "_CHUNK", 1)
    _assert_paths_agree(20, 19, 5, 2, 2, 9)


def test_attention_dropout_gradients() -> None:
    """With a fixed seed the dropped-out attention is one function; its backward replays the same masks."""
    plan = nat._plan(5, 6, (3, 3), (1, 1), 5, torch.device("cpu"))
    q, k, v = (torch.randn(1, 2, 30, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    table = nat._bias_table(torch.randn(2, 5, 5, dtype=torch.float64), 5, q).requires_grad_()
    dropped = functools.partial(nat._TiledAttention.apply, plan=plan, scale=0.5, dropout=0.3, seed=7)
    assert not torch.equal(dropped(q, k, v, table), nat._TiledAttention.apply(q, k, v, table, plan, 0.5, 0.0, None))
    assert torch.autograd.gradcheck(lambda *args: dropped(*args), (q, k, v, table))


def test_bfloat16_runs_close_to_float32() -> None:
    q, k, v, rpb = _qkv_rpb(9, 13, 2, 13)
    ref = neighborhood_attention_reference(q, k, v, 7, 1, rpb)
    half = [t.detach().bfloat16().requires_grad_() for t in (q, k, v, rpb)]
    out = neighborhood_attention(*half[:3], 7, 1, half[3])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.isfinite().all() for t in half)


@pytest.mark.parametrize(("height", "width", "kernel"), [(3, 12, (3, 7)), (2, 5, (2, 5))])
def test_window_spanning_an_axis_with_a_larger_bias_table(height, width, kernel) -> None:
    """What NeighborhoodAttention2D does on small maps: the table of its kernel-7 bias, indexed around its centre."""
    _assert_paths_agree(height, width, kernel, 1, 2, 13)


@pytest.mark.parametrize(("height", "width", "kernel", "dilation"), [(9, 13, 7, 1), (20, 19, 5, 2), (17, 12, 3, 4)])
def test_every_query_sees_exactly_k_squared_keys(height, width, kernel, dilation) -> None:
    keys = neighborhood_keys(height, width, kernel, dilation)
    assert keys.shape == (height * width, kernel * kernel)
    assert all(len(set(row.tolist())) == kernel * kernel for row in keys)
    assert keys.min() >= 0 and keys.max() < height * width
    rows, cols = keys // width, keys % width  # every key shares its query's dilation sub-grid
    query = torch.arange(height * width)[:, None]
    assert ((rows - query // width) % dilation == 0).all() and ((cols - query % width) % dilation == 0).all()


def _block(rows: list[int], cols: list[int], width: int) -> list[int]:
    return [y * width + x for y in rows for x in cols]


@pytest.mark.parametrize(
    ("height", "width", "kernel", "dilation", "query", "rows", "cols"),
    [
        (9, 13, 5, 1, (0, 0), [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),  # corner: shifted in, not padded
        (9, 13, 5, 1, (8, 12), [4, 5, 6, 7, 8], [8, 9, 10, 11, 12]),
        (9, 13, 5, 1, (1, 11), [0, 1, 2, 3, 4], [8, 9, 10, 11, 12]),
        (9, 13, 5, 1, (4, 6), [2, 3, 4, 5, 6], [4, 5, 6, 7, 8]),  # interior: centred
        (10, 10, 3, 2, (1, 9), [1, 3, 5], [5, 7, 9]),  # clamped within the odd sub-grid
        (10, 10, 3, 2, (9, 8), [5, 7, 9], [4, 6, 8]),
        (10, 11, 3, 2, (0, 10), [0, 2, 4], [6, 8, 10]),  # 11 wide: the even sub-grid has 6 columns
        (10, 11, 3, 2, (5, 9), [3, 5, 7], [5, 7, 9]),  # ... the odd one 5
    ],
)
def test_border_windows_by_hand(height, width, kernel, dilation, query, rows, cols) -> None:
    keys = neighborhood_keys(height, width, kernel, dilation)
    assert keys[query[0] * width + query[1]].tolist() == _block(rows, cols, width)


@pytest.mark.parametrize("attention", [neighborhood_attention, neighborhood_attention_reference])
@pytest.mark.parametrize(
    ("height", "width", "kernel", "dilation", "query", "rows", "cols", "bias_rows", "bias_cols"),
    [
        # top-right corner: window rows 0..4 (dy = 0..4), cols 8..12 (dx = -4..0) -> rpb[:, 4:9, 0:5]
        (9, 13, 5, 1, (0, 12), [0, 1, 2, 3, 4], [8, 9, 10, 11, 12], slice(4, 9), slice(0, 5)),
        # dilation 2, query (1, 9): sub-grid index (0, 4); window sub-rows 0..2 (dy 0..2), sub-cols 2..4 (dx -2..0)
        (10, 10, 3, 2, (1, 9), [1, 3, 5], [5, 7, 9], slice(2, 5), slice(0, 3)),
    ],
)
def test_relative_position_bias_by_hand(
    attention, height, width, kernel, dilation, query, rows, cols, bias_rows, bias_cols
) -> None:
    """With q = 0 the weights are softmax(bias); one-hot values read them out per key."""
    heads, tokens = 2, height * width
    rpb = torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1)
    q = torch.zeros(1, heads, height, width, tokens)
    k = torch.randn(1, heads, height, width, tokens)
    v = torch.eye(tokens).reshape(1, 1, height, width, tokens).expand(1, heads, -1, -1, -1)
    weights = attention(q, k, v, kernel, dilation, rpb)[0, :, query[0], query[1]]  # (heads, tokens)
    expected = torch.zeros(heads, tokens)
    expected[:, _block(rows, cols, width)] = rpb[:, bias_rows, bias_cols].flatten(1).softmax(-1)
    torch.testing.assert_close(weights, expected)


def test_invalid_windows_are_rejected() -> None:
    q = torch.zeros(1, 2, 6, 13, 4)
    with pytest.raises(ValueError, match=r"6x13 is smaller than kernel\*dilation = 7\*1 in height"):
        neighborhood_attention(q, q, q, 7)
    with pytest.raises(ValueError, match=r"smaller than kernel\*dilation = 3\*5 in width"):
        neighborhood_attention_reference(torch.zeros(1, 2, 16, 13, 4), torch.zeros(1, 2, 16, 13, 4),
                                         torch.zeros(1, 2, 16, 13, 4), 3, 5)
    with pytest.raises(ValueError, match=r"map 10x10 is smaller than kernel\*dilation = 3\*4 in height"):
        neighborhood_keys(10, 10, 3, 4)
    with pytest.raises(ValueError, match="must be odd"):
        neighborhood_attention(q, q, q, 4)
    with pytest.raises(ValueError, match=r"rpb must have shape \(heads=2, S, S\)"):
        neighborhood_attention(q, q, q, 5, 1, torch.zeros(2, 7, 7))
    with pytest.raises(ValueError, match="positive odd"):
        NeighborhoodAttention2D(16, 2, kernel_size=6)


# ------------------------------------------------------------------------------------------- the module
def test_window_shrinks_to_small_maps() -> None:
    attn = NeighborhoodAttention2D(16, 2, kernel_size=7, dilation=8)
    assert attn.window(56, 56) == ((7, 7), (8, 8))
    assert attn.window(28, 28) == ((7, 7), (4, 4))  # dilation = min(H, W) // kernel
    assert attn.window(56, 40) == ((7, 7), (5, 5))
    assert attn.window(12, 12) == ((7, 7), (1, 1))
    assert attn.window(2, 12) == ((2, 7), (1, 1))  # window spans the short axis


def test_map_smaller_than_kernel_is_full_attention_with_centred_bias() -> None:
    torch.manual_seed(0)
    attn = NeighborhoodAttention2D(16, 2, kernel_size=7, dilation=2).eval()
    x = torch.randn(2, 2, 3, 16)
    q, k, v = attn.qkv(x).reshape(2, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)  # (B, heads, 6 tokens, 8)
    pos = torch.tensor([(y, x_) for y in range(2) for x_ in range(3)])
    offset = pos[None, :, :] - pos[:, None, :]  # key minus query
    bias = attn.rpb[:, 6 + offset[..., 0], 6 + offset[..., 1]]
    weights = ((q * attn.scale) @ k.transpose(-2, -1) + bias).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 2, 3, 16))
    torch.testing.assert_close(attn(x), expected, atol=ATOL, rtol=RTOL)


def test_attention_weights_reproduce_the_forward() -> None:
    torch.manual_seed(0)
    attn = NeighborhoodAttention2D(16, 2, kernel_size=5, dilation=2).eval()
    x = torch.randn(2, 10, 12, 16)
    weights, keys = attn.attention_weights(x)
    assert weights.shape == (2, 2, 120, 25)
    assert torch.equal(keys, neighborhood_keys(10, 12, 5, 2))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 120))
    v = attn.qkv(x).reshape(2, 120, 3, 2, 8)[:, :, 2].transpose(1, 2)  # (B, heads, tokens, 8)
    out = torch.einsum("bhqk,bhqkd->bhqd", weights, v[:, :, keys])
    torch.testing.assert_close(attn.proj(out.transpose(1, 2).reshape(2, 10, 12, 16)), attn(x), atol=ATOL, rtol=RTOL)


# -------------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def model() -> NAT:
    torch.manual_seed(0)
    return timm.create_model("nat_mini", pretrained=False, num_classes=0, in_chans=1).eval()


@pytest.mark.parametrize("size", [(48, 48), (64, 64), (112, 112), (224, 224), (96, 160), (50, 70)])
def test_output_and_stage_shapes(model: NAT, size: tuple[int, int]) -> None:
    """Any size works, without padding: stage i is ceil(side / 2**(i + 2)), i.e. side / 4 / 2**i for x32 sizes."""
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        assert model(x).shape == (1, 512)
        maps = model.forward_intermediates(x, intermediates_only=True)
    expected = [(1, 64 * 2**i, math.ceil(size[0] / 2 ** (i + 2)), math.ceil(size[1] / 2 ** (i + 2))) for i in range(4)]
    assert [tuple(m.shape) for m in maps] == expected
    if size[0] % 32 == 0 and size[1] % 32 == 0:
        assert [m.shape[-2:] for m in maps] == [(size[0] // r, size[1] // r) for r in (4, 8, 16, 32)]


def test_prefix_tokens_are_the_stage_averages_and_norm_hits_the_last_stage(model: NAT) -> None:
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        outputs = model.forward_intermediates(x, indices=[0, -1], return_prefix_tokens=True, norm=True,
                                              output_fmt="NCHW", intermediates_only=True)
        final, maps = model.forward_intermediates(x, indices=2)
        features, pooled = model.forward_features(x), model(x)
    (map0, prefix0), (map3, prefix3) = outputs
    assert map0.shape == (2, 64, 16, 24) and prefix0.shape == (2, 1, 64)
    torch.testing.assert_close(prefix0[:, 0], map0.mean((-2, -1)))
    torch.testing.assert_close(map3, features)  # normed, as forward_features
    torch.testing.assert_close(prefix3[:, 0], pooled)  # the image embedding
    torch.testing.assert_close(final, features)
    assert [m.shape[1] for m in maps] == [256, 512]
    torch.testing.assert_close(maps[1], model.forward_intermediates(x, indices=[3], norm=False,
                                                                    intermediates_only=True)[0])


def test_output_formats(model: NAT) -> None:
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        nhwc = model.forward_intermediates(x, indices=[1], output_fmt="NHWC", intermediates_only=True)[0]
        nchw = model.forward_intermediates(x, indices=[1], output_fmt="NCHW", intermediates_only=True)[0]
    torch.testing.assert_close(nhwc.permute(0, 3, 1, 2), nchw)
    with pytest.raises(ValueError, match=r"Unknown output_fmt 'NLC'. Valid formats are \['NCHW', 'NHWC'\]"):
        model.forward_intermediates(x, output_fmt="NLC")


@pytest.mark.parametrize("in_chans", [1, 3])
def test_in_chans_and_classifier(in_chans: int) -> None:
    model = timm.create_model("dinat_mini", pretrained=False, in_chans=in_chans, num_classes=5)
    assert model(torch.rand(2, in_chans, 64, 64)).shape == (2, 5)
    assert model.forward_head(model.forward_features(torch.rand(2, in_chans, 64, 64)), pre_logits=True).shape == (2, 512)


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = timm.create_model("dinat_mini", pretrained=False, num_classes=3, drop_path_rate=0.0)
    model(torch.rand(2, 3, 64, 64)).logsumexp(-1).sum().backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient for {silent}"


def test_create_model_with_the_vit_construction_arguments() -> None:
    model = timm.create_model("nat_mini", pretrained=False, num_classes=0, in_chans=1, img_size=112,
                              dynamic_img_size=True, drop_path_rate=0.1)
    assert isinstance(model, NAT)
    assert (model.num_features, model.embed_dim, model.stage_dims) == (512, 64, (64, 128, 256, 512))
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(64, 4), (128, 8), (256, 16), (512, 32)]
    assert model.levels[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert model(torch.rand(1, 1, 96, 96)).shape == (1, 512)
    assert {"nat_mini", "nat_tiny", "dinat_mini", "dinat_tiny"} <= set(timm.list_models("*nat_*"))
    assert sum(p.numel() for p in timm.create_model("nat_tiny").parameters()) == pytest.approx(28e6, rel=0.01)
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model("nat_mini", pretrained=True)


def test_features_only_through_timm() -> None:
    model = timm.create_model("nat_mini", pretrained=False, features_only=True, out_indices=(1, 3))
    maps = model(torch.rand(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 128, 8, 12), (1, 512, 2, 3)]
    assert model.feature_info.channels() == [128, 512] and model.feature_info.reduction() == [8, 32]
    early = timm.create_model("nat_mini", pretrained=False, features_only=True, out_indices=(0, 1))
    assert len(early.model.levels) == 2 and early.model.levels[-1].downsample is None  # later stages pruned
    assert [tuple(m.shape) for m in early(torch.rand(1, 3, 64, 96))] == [(1, 64, 16, 24), (1, 128, 8, 12)]


def test_dinat_dilations_follow_the_map_size() -> None:
    model = timm.create_model("dinat_mini", pretrained=False)
    stage0 = [block.attn for block in model.levels[0].blocks]
    assert [a.window(56, 56)[1][0] for a in stage0] == [1, 8, 1]  # 224 px: DiNAT's own dilations
    assert [a.window(28, 28)[1][0] for a in stage0] == [1, 4, 1]  # 112 px
    assert [a.window(12, 12)[1][0] for a in stage0] == [1, 1, 1]  # 48-px local crop


def test_safetensors_round_trip_and_eval_determinism(model: NAT, tmp_path: Path) -> None:
    path = tmp_path / "nat.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.manual_seed(1)
    copy = timm.create_model("nat_mini", pretrained=False, num_classes=0, in_chans=1).eval()
    copy.load_state_dict(load_file(str(path)))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        first = model(x)
        assert torch.equal(first, model(x))
        assert torch.equal(first, copy(x))


def test_parameter_names_follow_the_reference_implementation(model: NAT) -> None:
    names = set(model.state_dict())
    assert {"patch_embed.proj.0.weight", "patch_embed.norm.weight", "levels.0.blocks.0.attn.qkv.weight",
            "levels.0.blocks.0.attn.rpb", "levels.0.blocks.0.attn.proj.weight", "levels.0.blocks.0.mlp.fc1.weight",
            "levels.0.downsample.reduction.weight", "levels.2.downsample.norm.bias", "norm.weight"} <= names
    assert not any(name.startswith("levels.3.downsample") for name in names)
    assert model.no_weight_decay() == {n for n in names if n.endswith("attn.rpb")}


def test_layer_scale_starts_blocks_near_identity() -> None:
    model = NAT(depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), embed_dim=16, layer_scale=1e-5, num_classes=0).eval()
    block = model.levels[0].blocks[0]
    assert torch.equal(block.gamma1, torch.full((16,), 1e-5)) and "levels.0.blocks.0.gamma2" in model.state_dict()
    x = torch.randn(1, 8, 8, 16)
    torch.testing.assert_close(block(x), x, atol=1e-3, rtol=0)
