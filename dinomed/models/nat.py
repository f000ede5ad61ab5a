"""Neighbourhood Attention Transformer (NAT) and its dilated variant (DiNAT) in plain PyTorch.

Neighbourhood attention (Hassani et al., "Neighborhood Attention Transformer", CVPR 2023) lets every pixel
attend to its ``k x k`` nearest pixels instead of the whole map, so the cost grows linearly with the number of
pixels rather than quadratically as in a ViT, and a hierarchy of stride-4..32 maps can feed dense heads.
Dilated neighbourhood attention (Hassani & Shi, "Dilated Neighborhood Attention Transformer", 2022) spreads the
window over pixels ``d`` apart in alternate blocks to widen the receptive field at the same cost.

NATTEN, the reference implementation, no longer ships CPU or pure-PyTorch kernels, so this module has its own:

* :func:`neighborhood_attention` is the fast path. It groups queries into tiles of 8 x 8 (neighbouring
  positions of one dilation sub-grid), gathers the one key region the tile's windows cover, and runs a masked
  dense attention per tile with the relative position bias added, a few tiles at a time; backward recomputes
  the weights (as FlashAttention) instead of storing them. Measured on 2 CPU cores (batch 8 x 2 heads x 64x64
  map x 32 channels, kernel 7, forward + backward) it takes ~0.3 s and ~0.23 GB, against ~1.5 s and ~1.35 GB
  for gathering the ``k*k`` keys of every query separately (which copies each key ``k*k`` times); for the
  whole ``nat_mini`` at 512 px, batch 8, recomputing instead of storing the weights cut the step from ~25 s to
  ~17 s and the peak memory from 7.4 to 4.9 GB.
* ``torch.nn.attention.flex_attention`` is not used: on CPU it refuses inputs that need gradients
  ("FlexAttention does not support backward on CPU", torch 2.14), eager mode materialises the full
  ``HW x HW`` score matrix (7 s for the forward above) and ``torch.compile`` failed to build the CPU kernel for
  a 64x64 map.
* :func:`neighborhood_attention_reference` builds the explicit ``HW x HW`` mask and bias from NATTEN's own
  window formulas; tests check the fast path against it.

Windows follow NATTEN exactly: near a border the window is shifted to stay inside the map (every query sees
``k*k`` keys, no zero padding); with dilation ``d`` the map splits into ``d x d`` interleaved sub-grids and the
clamping applies within each; the bias of a key is ``rpb[:, k-1+dy, k-1+dx]`` with ``(dy, dx)`` its offset from
the query in sub-grid steps.

Example:
    >>> model = timm.create_model("nat_mini", pretrained=False, num_classes=0, in_chans=1)
    >>> model(torch.rand(2, 1, 112, 112)).shape      # pooled embedding
    torch.Size([2, 512])
    >>> [m.shape[-1] for m in model.forward_intermediates(torch.rand(1, 1, 112, 112), intermediates_only=True)]
    [28, 14, 7, 4]
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

__all__ = [
    "NAT",
    "NATBlock",
    "NATStage",
    "NeighborhoodAttention2D",
    "neighborhood_attention",
    "neighborhood_attention_reference",
    "neighborhood_keys",
]

# Queries per tile side, in sub-grid positions. Of 4, 6, 8, 10 and 14, 8 was fastest for kernel 7 on CPU. Per
# query and head a tile scores (8 + k - 1)^2 keys (4x the k^2 it needs); smaller tiles waste fewer scores but
# gather more copies of each key.
_TILE = 8
_PAIR = tuple[int, int]


def _pair(value: int | Sequence[int], name: str) -> _PAIR:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _window_pairs(
    height: int, width: int, kernel: int | Sequence[int], dilation: int | Sequence[int]
) -> tuple[_PAIR, _PAIR]:
    """Validated (kernel, dilation) pairs for a ``height x width`` map."""
    kernel, dilation = _pair(kernel, "kernel"), _pair(dilation, "dilation")
    for axis, length, size, step in zip(("height", "width"), (height, width), kernel, dilation):
        if size * step > length:
            raise ValueError(f"map {height}x{width} is smaller than kernel*dilation = {size}*{step} in {axis}; "
                             f"neighbourhood attention needs {axis} >= kernel*dilation (as NATTEN). "
                             "NeighborhoodAttention2D shrinks its window to fit small maps")
        if size % 2 == 0 and size != length:
            raise ValueError(f"kernel {size} in {axis} must be odd (a window centred on the query) or span the "
                             f"whole axis ({length})")
    return kernel, dilation


def _check_window(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int | Sequence[int], dilation: int | Sequence[int],
    rpb: torch.Tensor | None,
) -> tuple[_PAIR, _PAIR, int]:
    """Validated (kernel, dilation) pairs and the bias table side for ``q, k, v`` of shape (B, heads, H, W, D)."""
    if q.dim() != 5 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape (batch, heads, height, width, head_dim); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    kernel, dilation = _window_pairs(q.shape[2], q.shape[3], kernel, dilation)
    side = 2 * max(kernel) - 1
    if rpb is not None:
        if rpb.dim() != 3 or rpb.shape[0] != q.shape[1] or rpb.shape[1] != rpb.shape[2] or rpb.shape[1] % 2 == 0 \
                or rpb.shape[1] < side:
            raise ValueError(f"rpb must have shape (heads={q.shape[1]}, S, S) with odd S >= 2*kernel-1 = {side}, "
                             f"got {tuple(rpb.shape)}")
        side = rpb.shape[1]
    return kernel, dilation, side


# --------------------------------------------------------------------------------------------- index tables
def _axis_windows(length: int, kernel: int, dilation: int) -> torch.Tensor:
    """(length, kernel): the window key positions of each position of one axis.

    A position ``p`` lies in sub-grid ``p % dilation`` at index ``p // dilation``; the window is the ``kernel``
    consecutive sub-grid indices centred on it, shifted to stay inside the sub-grid (NAT's border clamping).
    """
    pos = torch.arange(length)
    residue, sub = pos % dilation, pos // dilation
    sub_len = (length - residue + dilation - 1) // dilation
    start = torch.minimum((sub - kernel // 2).clamp(min=0), sub_len - kernel)
    return residue[:, None] + (start[:, None] + torch.arange(kernel)) * dilation


def neighborhood_keys(
    height: int, width: int, kernel: int | Sequence[int], dilation: int | Sequence[int] = 1
) -> torch.Tensor:
    """Flat key index (``y * width + x``) of each query's window, shape (height*width, kh*kw), window row-major.

    ``keys[i].reshape(kh, kw)`` is the neighbourhood of query ``i`` as it lies in the image, which is how the
    weights of :meth:`NeighborhoodAttention2D.attention_weights` are laid out.
    """
    (kh, kw), (dh, dw) = _window_pairs(height, width, kernel, dilation)
    rows, cols = _axis_windows(height, kh, dh), _axis_windows(width, kw, dw)
    return (rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(height * width, kh * kw)


@dataclass(frozen=True)
class _AxisTiles:
    """Tiles along one axis: query positions, the key region their windows cover, and who sees whom."""

    queries: torch.Tensor  # (tiles, T) positions, -1 where the tile runs past its sub-grid
    region: torch.Tensor  # (tiles, R) positions, -1 past the sub-grid
    inside: torch.Tensor  # (tiles, T, R) region position lies in the query's window
    offset: torch.Tensor  # (tiles, T, R) region minus query position, in sub-grid steps
    slot: torch.Tensor  # (length,) tile * T + row of each position
    window_slot: torch.Tensor  # (length, kernel) region index of each window key within the position's tile


def _axis_tiles(length: int, kernel: int, dilation: int) -> _AxisTiles:
    """Split each dilation sub-grid of one axis into runs of ``_TILE`` queries and the keys their windows reach."""
    longest = -(-length // dilation)
    size = min(_TILE, longest)
    reach = min(size + kernel - 1, longest)
    queries, region, region_start = [], [], []
    for residue in range(dilation):
        sub_len = -(-(length - residue) // dilation)
        for first in range(0, sub_len, size):
            window_start = min(max(first - kernel // 2, 0), sub_len - kernel)  # windows only move right
            low = max(min(window_start, sub_len - reach), 0)
            q_sub, r_sub = torch.arange(first, first + size), torch.arange(low, low + reach)
            queries.append(torch.where(q_sub < sub_len, residue + q_sub * dilation, -1))
            region.append(torch.where(r_sub < sub_len, residue + r_sub * dilation, -1))
            region_start.append(residue + low * dilation)
    queries, region = torch.stack(queries), torch.stack(region)
    keys = _axis_windows(length, kernel, dilation)
    owner = queries.clamp(min=0)
    inside = (region[:, None, :, None] == keys[owner][:, :, None, :]).any(-1)
    inside &= (queries >= 0)[:, :, None] & (region >= 0)[:, None, :]
    offset = torch.div(region[:, None, :] - owner[:, :, None], dilation, rounding_mode="floor")
    valid = queries.flatten() >= 0
    slot = torch.empty(length, dtype=torch.long)
    slot[queries.flatten()[valid]] = torch.arange(queries.numel())[valid]
    first_key = torch.tensor(region_start)[slot // size]
    window_slot = torch.div(keys - first_key[:, None], dilation, rounding_mode="floor")
    return _AxisTiles(queries, region, inside, offset, slot, window_slot)


@dataclass(frozen=True)
class _Plan:
    """Index tables of the tiled attention for one map size, window and bias table (cached per device)."""

    keys: torch.Tensor  # (HW, kh*kw) flat key index of each query's window
    tile_queries: torch.Tensor  # (N, Tq) flat query index per tile slot (padding slots read query 0)
    tile_keys: torch.Tensor  # (N, Rk) flat key index of the tile's region (padding reads key 0)
    tile_bias: torch.Tensor  # (N, Tq, Rk) index into [rpb.flatten(1), -inf, 0]
    query_slot: torch.Tensor  # (HW,) position of each query in the flattened (N, Tq) tiles
    window_slot: torch.Tensor  # (HW, kh*kw) position of each window key in the flattened (N, Tq, Rk) weights


@functools.lru_cache(maxsize=32)
def _plan(height: int, width: int, kernel: _PAIR, dilation: _PAIR, table: int, device: torch.device) -> _Plan:
    rows, cols = _axis_tiles(height, kernel[0], dilation[0]), _axis_tiles(width, kernel[1], dilation[1])
    (ny, ty), (nx, tx) = rows.queries.shape, cols.queries.shape
    ry, rx = rows.region.shape[1], cols.region.shape[1]

    def grid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        flat = a[:, None, :, None] * width + b[None, :, None, :]
        valid = (a >= 0)[:, None, :, None] & (b >= 0)[None, :, None, :]
        return torch.where(valid, flat, -1).reshape(ny * nx, -1)

    def outer(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a[:, None, :, None, :, None], b[None, :, None, :, None, :]

    tile_queries, tile_keys = grid(rows.queries, cols.queries), grid(rows.region, cols.region)
    in_rows, in_cols = outer(rows.inside, cols.inside)
    off_rows, off_cols = outer(rows.offset, cols.offset)
    centre = (table - 1) // 2
    bias = ((centre + off_rows) * table + centre + off_cols).expand(ny, nx, ty, tx, ry, rx)
    bias = torch.where(in_rows & in_cols, bias, table * table).reshape(ny * nx, ty * tx, ry * rx)
    bias = torch.where((tile_queries < 0)[:, :, None], table * table + 1, bias)  # padding rows: finite, unused
    query_slot = (
        (rows.slot[:, None] // ty * nx + cols.slot[None, :] // tx) * (ty * tx)
        + rows.slot[:, None] % ty * tx + cols.slot[None, :] % tx
    ).flatten()
    window_slot = rows.window_slot[:, None, :, None] * rx + cols.window_slot[None, :, None, :]
    window_slot = query_slot[:, None] * (ry * rx) + window_slot.reshape(height * width, -1)
    tables = (neighborhood_keys(height, width, kernel, dilation), tile_queries.clamp(min=0),
              tile_keys.clamp(min=0), bias, query_slot, window_slot)
    return _Plan(*(t.to(device) for t in tables))


# ------------------------------------------------------------------------------------------------ attention
# Elements of one chunk of tile weights (B x heads x tiles x Tq x Rk floats, ~16 MB): the weights are built
# chunk by chunk so the temporaries stay small and are reused from the allocator instead of being mapped
# afresh (at 512 px, allocating whole-map weights spent a third of the step in page faults).
_CHUNK = 1 << 22


def _softmax_dtype(x: torch.Tensor) -> torch.dtype:
    """Scores and softmax run in float32 at least, whatever the dtype of q (bf16 / fp16 under autocast)."""
    return torch.promote_types(x.dtype, torch.float32)


def _bias_table(rpb: torch.Tensor | None, table: int, like: torch.Tensor) -> torch.Tensor:
    """(heads or 1, S*S + 2): the flattened bias, then -inf (key outside the window), then 0 (padding)."""
    dtype = _softmax_dtype(like)
    bias = rpb.flatten(1).to(dtype) if rpb is not None else like.new_zeros(1, table * table, dtype=dtype)
    return torch.cat([bias, bias.new_full((bias.shape[0], 1), float("-inf")), bias.new_zeros(bias.shape[0], 1)], 1)


def _chunks(plan: _Plan, batch: int, heads: int) -> list[slice]:
    tiles, queries, keys = plan.tile_bias.shape
    size = max(1, _CHUNK // (batch * heads * queries * keys))
    return [slice(i, min(i + size, tiles)) for i in range(0, tiles, size)]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (B, heads, HW, D) at ``index`` (tiles, n): (B, heads, tiles, n, D)."""
    return x.index_select(2, index.flatten()).view(*x.shape[:2], *index.shape, x.shape[-1])


def _scores(
    q: torch.Tensor, k: torch.Tensor, table: torch.Tensor, plan: _Plan, part: slice, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (B, heads, tiles, Tq, Rk) of the tiles in ``part``, with their gathered queries and keys."""
    qt, kt = _gather(q, plan.tile_queries[part]), _gather(k, plan.tile_keys[part])
    scores = (qt @ kt.transpose(-2, -1)).to(table.dtype).mul_(scale)
    return scores.add_(table[:, plan.tile_bias[part]]), qt, kt


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """Attention-dropout generator; backward re-creates it from the same seed to replay forward's masks."""
    return torch.Generator(device=device).manual_seed(seed) if seed is not None else None


def _keep_mask(generator: torch.Generator | None, p: float, like: torch.Tensor) -> torch.Tensor | None:
    """Scaled dropout keep-mask shaped as ``like`` (``None`` without dropout)."""
    if generator is None:
        return None
    return torch.empty_like(like).bernoulli_(1 - p, generator=generator).div_(1 - p)


def _tiled_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, plan: _Plan, scale: float,
    dropout: float = 0.0, seed: int | None = None, keep_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Output (B, heads, HW, D), log-sum-exp (B, heads, tiles, Tq) and, if asked, the weights per chunk."""
    batch, heads, _, dim = q.shape
    tiles, queries, _ = plan.tile_bias.shape
    out = q.new_empty(batch, heads, tiles, queries, dim)
    lse = q.new_empty(batch, heads, tiles, queries, dtype=table.dtype)
    weights, generator = [], _generator(seed, q.device)
    for part in _chunks(plan, batch, heads):
        scores, _, _ = _scores(q, k, table, plan, part, scale)
        lse[:, :, part] = scores.logsumexp(dim=-1)
        probs = scores.sub_(lse[:, :, part, :, None]).exp_()
        if keep_weights:
            weights.append(probs.clone())
        mask = _keep_mask(generator, dropout, probs)
        probs = probs.mul_(mask) if mask is not None else probs
        out[:, :, part] = probs.to(v.dtype) @ _gather(v, plan.tile_keys[part])
    return out.flatten(2, 3).index_select(2, plan.query_slot), lse, weights


class _TiledAttention(torch.autograd.Function):
    """Tiled neighbourhood attention that keeps only q, k, v, the output and log-sum-exps for backward.

    The weights are recomputed chunk by chunk in backward, as FlashAttention (Dao et al. 2022) does, so
    training memory per pixel does not carry ``heads x (8 + k - 1)^2`` weights per block.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, plan: _Plan,
                scale: float, dropout: float, seed: int | None) -> torch.Tensor:
        out, lse, _ = _tiled_forward(q, k, v, table, plan, scale, dropout, seed)
        ctx.save_for_backward(q, k, v, table, out, lse)
        ctx.plan, ctx.scale, ctx.dropout, ctx.seed = plan, scale, dropout, seed
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, table, out, lse = ctx.saved_tensors
        plan, scale = ctx.plan, ctx.scale
        batch, heads, _, dim = q.shape
        tiles, queries, _ = plan.tile_bias.shape

        def to_tiles(x: torch.Tensor) -> torch.Tensor:  # query order -> tile slots, zeros in padding slots
            slots = x.new_zeros(batch, heads, tiles * queries, x.shape[-1]).index_copy_(2, plan.query_slot, x)
            return slots.view(batch, heads, tiles, queries, -1)

        grad = grad.contiguous()
        grad_tiles = to_tiles(grad)
        delta = to_tiles((grad.to(lse.dtype) * out).sum(-1, keepdim=True))  # rowsum(dP * P) = rowsum(dO * O)
        dq = q.new_empty(batch, heads, tiles, queries, dim)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)
        dtable = torch.zeros_like(table) if ctx.needs_input_grad[3] else None
        generator = _generator(ctx.seed, q.device)
        for part in _chunks(plan, batch, heads):
            scores, qt, kt = _scores(q, k, table, plan, part, scale)
            probs = scores.sub_(lse[:, :, part, :, None]).exp_()
            keys, vt, g = plan.tile_keys[part].flatten(), _gather(v, plan.tile_keys[part]), grad_tiles[:, :, part]
            mask = _keep_mask(generator, ctx.dropout, probs)
            kept = probs * mask if mask is not None else probs
            dv.index_add_(2, keys, (kept.to(v.dtype).transpose(-2, -1) @ g).flatten(2, 3))
            dprobs = (g @ vt.transpose(-2, -1)).to(lse.dtype)
            dprobs = dprobs.mul_(mask) if mask is not None else dprobs
            dscores = dprobs.sub_(delta[:, :, part]).mul_(probs)
            if dtable is not None:
                dtable.index_add_(1, plan.tile_bias[part].flatten(), dscores.sum(0).flatten(1))
            dscores = dscores.to(q.dtype)
            dq[:, :, part] = (dscores @ kt).mul_(scale)
            dk.index_add_(2, keys, (dscores.transpose(-2, -1) @ qt).mul_(scale).flatten(2, 3))
        return dq.flatten(2, 3).index_select(2, plan.query_slot), dk, dv, dtable, None, None, None, None


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Plan, rpb: torch.Tensor | None, table: int,
    scale: float, dropout: float = 0.0,
) -> torch.Tensor:
    """Neighbourhood attention of (B, heads, HW, D) inputs, with attention dropout ``dropout``."""
    seed = int(torch.randint(2**62, (1,))) if dropout > 0 else None  # replayed in backward
    return _TiledAttention.apply(q, k, v, _bias_table(rpb, table, q), plan, scale, dropout, seed)


def neighborhood_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    rpb: torch.Tensor | None = None,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """2-D (dilated) neighbourhood attention with NATTEN's border clamping and relative position bias.

    Args:
        q, k, v: (batch, heads, height, width, head_dim).
        kernel: window side ``k`` (odd, as NATTEN), or a (height, width) pair; a window may also span a whole
            axis (then any size), which is how :class:`NeighborhoodAttention2D` handles maps smaller than ``k``.
        dilation: spacing ``d`` of the window's pixels, or a pair; needs ``kernel * dilation <= map side``.
        rpb: relative position bias (heads, S, S), odd ``S >= 2k - 1``; a key at offset ``(dy, dx)`` sub-grid
            steps from its query adds ``rpb[:, S//2 + dy, S//2 + dx]`` (``k - 1 + dy`` when ``S = 2k - 1``).
        scale: multiplies ``q``; default ``head_dim ** -0.5``.

    Returns:
        (batch, heads, height, width, head_dim).

    Raises:
        ValueError: mismatched shapes, a map smaller than ``kernel * dilation``, an even kernel that does not
            span its axis, or a bias table of the wrong shape.
    """
    kernel, dilation, table = _check_window(q, k, v, kernel, dilation, rpb)
    batch, heads, height, width, dim = q.shape
    plan = _plan(height, width, kernel, dilation, table, q.device)
    q, k, v = (t.reshape(batch, heads, height * width, dim) for t in (q, k, v))
    out = _attend(q, k, v, plan, rpb, table, dim ** -0.5 if scale is None else scale)
    return out.reshape(batch, heads, height, width, dim)


def _natten_window(index: int, length: int, kernel: int, dilation: int) -> tuple[int, int]:
    """NATTEN's ``get_window_start`` and ``get_pb_start`` for one axis: first key and first bias index.

    NATTEN defines them for odd kernels; a window spanning the whole axis starts at 0 for any size.
    """
    if kernel == length:
        return 0, kernel - 1 - index
    half = kernel // 2
    if dilation <= 1:
        start = max(index - half, 0) + (index + half >= length) * (length - index - half - 1)
        bias = half + (index < half) * (half - index) + (index + half >= length) * (length - index - 1 - half)
        return start, bias
    if index - half * dilation < 0:
        return index % dilation, kernel - 1 - index // dilation
    if index + half * dilation >= length:
        residue = index % dilation
        full = length // dilation * dilation
        extra = length - full
        start = length - extra + residue - 2 * half * dilation if residue < extra else full + residue - kernel * dilation
        return start, (length - index - 1) // dilation
    return index - half * dilation, half


def neighborhood_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    rpb: torch.Tensor | None = None,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Exact neighbourhood attention as masked softmax attention over the whole map (small maps; tests).

    Builds the (HW x HW) mask of allowed (query, key) pairs and the full bias matrix from NATTEN's window
    formulas, one query at a time, independently of the vectorised clamping of the fast path. Same arguments
    and result as :func:`neighborhood_attention`.
    """
    (kh, kw), (dh, dw), table = _check_window(q, k, v, kernel, dilation, rpb)
    batch, heads, height, width, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    query, key, bias_row, bias_col = [], [], [], []
    for y in range(height):
        y0, by = _natten_window(y, height, kh, dh)
        for x in range(width):
            x0, bx = _natten_window(x, width, kw, dw)
            for a in range(kh):
                for b in range(kw):
                    query.append(y * width + x)
                    key.append((y0 + a * dh) * width + x0 + b * dw)
                    bias_row.append(by + a + (table - 2 * kh + 1) // 2)  # NATTEN's table is 2k-1 wide
                    bias_col.append(bx + b + (table - 2 * kw + 1) // 2)
    query, key = torch.tensor(query, device=q.device), torch.tensor(key, device=q.device)
    allowed = torch.zeros(height * width, height * width, dtype=torch.bool, device=q.device)
    allowed[query, key] = True
    bias = q.new_zeros(heads, height * width, height * width)
    if rpb is not None:
        bias[:, query, key] = rpb[:, bias_row, bias_col]
    q, k, v = (t.reshape(batch, heads, height * width, dim) for t in (q, k, v))
    logits = (q * scale) @ k.transpose(-2, -1) + bias
    weights = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return (weights @ v).reshape(batch, heads, height, width, dim)


# ------------------------------------------------------------------------------------------------- modules
class NeighborhoodAttention2D(nn.Module):
    """Multi-head 2-D neighbourhood attention on channels-last maps (B, H, W, C), as NATTEN's module.

    ``qkv`` and ``proj`` carry timm ``Attention``'s names so the fused projection can be split into ``q``,
    ``k``, ``v`` for LoRA. On a map smaller than the window the module adapts instead of failing (NATTEN pads
    with zeros, which lets the padding take attention): the dilation drops to ``min(H, W) // kernel_size``
    (at least 1) and, along an axis shorter than ``kernel_size``, the window spans the whole axis, i.e.
    ordinary self-attention there, which neighbourhood attention becomes as its window grows.

    Example:
        >>> attn = NeighborhoodAttention2D(64, num_heads=2, kernel_size=7)
        >>> attn(torch.rand(2, 28, 28, 64)).shape
        torch.Size([2, 28, 28, 64])
        >>> weights, keys = attn.attention_weights(torch.rand(1, 28, 28, 64))   # (1, 2, 784, 49), (784, 49)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 7,
        dilation: int = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number (a window centred on the query), "
                             f"got {kernel_size}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.kernel_size, self.dilation = kernel_size, dilation
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def window(self, height: int, width: int) -> tuple[_PAIR, _PAIR]:
        """(kernel, dilation) pairs used on a ``height x width`` map; see the class docstring."""
        dilation = max(1, min(self.dilation, min(height, width) // self.kernel_size))
        return (min(self.kernel_size, height), min(self.kernel_size, width)), (dilation, dilation)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Plan]:
        """q, k, v as (B, heads, H*W, head_dim) and the index plan for the map of ``x`` (B, H, W, C)."""
        batch, height, width, _ = x.shape
        kernel, dilation = self.window(height, width)
        plan = _plan(height, width, kernel, dilation, self.rpb.shape[-1], x.device)
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2], plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, plan = self._qkv(x)
        dropout = self.attn_drop.p if self.training else 0.0
        out = _attend(q, k, v, plan, self.rpb, self.rpb.shape[-1], self.scale, dropout)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(x.shape)))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (B, heads, H*W, kh*kw) each query gives its window, and the window keys (H*W, kh*kw).

        ``weights[b, h, i].reshape(kh, kw)`` lies over the pixels ``keys[i]`` (flat ``y * W + x``), for drawing
        a query's neighbourhood; ``kh, kw`` come from :meth:`window`. For inspection: no gradients, no dropout.
        """
        q, k, v, plan = self._qkv(x)
        table = _bias_table(self.rpb, self.rpb.shape[-1], q)
        _, _, weights = _tiled_forward(q, k, v, table, plan, self.scale, keep_weights=True)
        return torch.cat(weights, dim=2).flatten(2)[:, :, plan.window_slot], plan.keys


class NATBlock(nn.Module):
    """Pre-norm transformer block: x + NA(LN(x)), then x + MLP(LN(x)), with drop path and optional layer scale.

    ``layer_scale`` (NAT-S/B use 1e-5) multiplies each branch by a learned per-channel ``gamma1`` / ``gamma2``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 7,
        dilation: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation, qkv_bias, attn_drop, proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.layer_scale = layer_scale is not None
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn(self.norm1(x))
        x = x + self.drop_path(self.gamma1 * attn if self.layer_scale else attn)
        mlp = self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma2 * mlp if self.layer_scale else mlp)


class ConvTokenizer(nn.Module):
    """Overlapping stem of NAT: two 3x3 stride-2 convolutions (total stride 4), then LayerNorm; NCHW -> NHWC."""

    def __init__(self, in_chans: int, embed_dim: int, norm_layer: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1),
        )
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    """3x3 stride-2 convolution doubling the channels, then LayerNorm (NHWC in and out), between NAT stages."""

    def __init__(self, dim: int, norm_layer: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = norm_layer(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATStage(nn.Module):
    """One resolution of NAT: ``blocks`` at a fixed width, then (all but the last stage) ``downsample``.

    ``forward`` runs the blocks only, so :class:`NAT` can read the stage's map before it is downsampled; the
    downsampler sits here (rather than at the start of the next stage) so parameter names follow the reference
    implementation (``levels.{i}.downsample``).
    """

    def __init__(
        self, dim: int, depth: int, num_heads: int, dilations: Sequence[int], downsample: bool,
        drop_path: Sequence[float], **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            NATBlock(dim, num_heads, dilation=dilations[i], drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        )
        self.downsample = ConvDownsampler(dim, block_kwargs.get("norm_layer", nn.LayerNorm)) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class NAT(nn.Module):
    """Hierarchical (Dilated) Neighbourhood Attention Transformer backbone.

    A stride-4 convolutional stem, then stages at strides 4, 8, 16, 32 whose widths double
    (``embed_dim * 2**i``) and whose blocks use neighbourhood attention; the last map is layer-normed and
    averaged into the image embedding (Hassani et al. 2023; Hassani & Shi 2022 for ``dilations``).

    Input size: NAT has no position embedding, so any ``H, W`` works; each stride-2 convolution gives
    ``ceil(side / 2)``, so stage ``i`` is ``ceil(H / 2**(i + 2)) x ceil(W / 2**(i + 2))`` (exactly
    ``H / 4 / 2**i`` for multiples of 32). Sizes are not padded up to a multiple of 32: a 48-px DINO crop gives
    12, 6, 3, 2 instead of 16, 8, 4, 2 with 112 of its 256 stage-0 tokens made of padding that would be
    attended to and averaged into the embedding. Maps smaller than the window (that 2x2 last stage with kernel
    7) use a window spanning the map, and dilations shrink to ``min(h, w) // kernel_size`` (at least 1), per
    forward call; see :class:`NeighborhoodAttention2D`. DiNAT's dilations (8, 4, 2, 1 for 224 px) are exactly
    what fits at 224; smaller inputs get smaller ones.

    Attributes:
        num_features: width of the pooled embedding = last stage width (``embed_dim * 8`` for 4 stages).
        embed_dim: width of the stem and first stage, as in the NAT paper (not the embedding width).
        stage_dims: width of each stage.
        feature_info: per stage ``num_chs``, ``reduction`` (4, 8, 16, 32) and ``module``, as timm.

    Example:
        >>> model = NAT(num_classes=0, in_chans=1)
        >>> model(torch.rand(2, 1, 96, 160)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 4, 6, 5),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        embed_dim: int = 64,
        mlp_ratio: float = 3.0,
        kernel_size: int = 7,
        dilations: Sequence[Sequence[int]] | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        layer_scale: float | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        img_size: int | Sequence[int] | None = None,
        dynamic_img_size: bool = True,
    ) -> None:
        """Build the backbone.

        Args:
            depths, num_heads: blocks and heads per stage.
            embed_dim: stem / first-stage width; stage ``i`` has ``embed_dim * 2**i`` channels.
            kernel_size: odd neighbourhood side, shared by all blocks.
            dilations: per stage, one dilation per block (DiNAT alternates 1 with a larger one); ``None`` = all 1.
            drop_rate: dropout before the classifier; ``proj_drop_rate`` / ``attn_drop_rate`` inside blocks.
            drop_path_rate: stochastic depth, rising linearly to this over all blocks (NAT-Mini/Tiny: 0.2).
            layer_scale: initial value of per-channel branch scales, or ``None`` for none.
            img_size, dynamic_img_size: accepted so the ViT construction path (``create_model(...,
                img_size=112, dynamic_img_size=True)``) also builds NAT; unused, since without position
                embeddings every input size works.
        """
        super().__init__()
        del img_size, dynamic_img_size  # size-agnostic: see the docstring
        if len(num_heads) != len(depths):
            raise ValueError(f"num_heads {tuple(num_heads)} needs one entry per stage of depths {tuple(depths)}")
        dilations = [[1] * depth for depth in depths] if dilations is None else [list(d) for d in dilations]
        if [len(d) for d in dilations] != list(depths):
            raise ValueError(f"dilations must list one value per block of each stage (depths {tuple(depths)}), "
                             f"got {dilations}")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.stage_dims = tuple(embed_dim * 2**i for i in range(len(depths)))
        self.num_features = self.head_hidden_size = self.stage_dims[-1]
        self.feature_info = [
            {"num_chs": dim, "reduction": 4 * 2**i, "module": f"levels.{i}"} for i, dim in enumerate(self.stage_dims)
        ]
        self.patch_embed = ConvTokenizer(in_chans, embed_dim, norm_layer)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.levels = nn.ModuleList(
            NATStage(
                dim, depths[i], num_heads[i], dilations[i], downsample=i < len(depths) - 1,
                drop_path=rates[sum(depths[:i]):sum(depths[:i + 1])], kernel_size=kernel_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                layer_scale=layer_scale, norm_layer=norm_layer,
            )
            for i, dim in enumerate(self.stage_dims)
        )
        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Relative position bias tables, exempt from weight decay as in NAT (timm's optimizer factory reads this)."""
        return {name for name, _ in self.named_parameters() if name.endswith(".rpb")}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _stage_maps(self, x: torch.Tensor, last: int) -> Iterator[torch.Tensor]:
        """NHWC output of stages 0..``last``, each before its downsampling."""
        x = self.patch_embed(x)
        for i, level in enumerate(self.levels[:last + 1]):
            if i > 0:
                x = self.levels[i - 1].downsample(x)
            x = level(x)
            yield x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Layer-normed last stage map, NCHW: (B, num_features, ceil(H/32), ceil(W/32))."""
        *_, x = self._stage_maps(x, len(self.levels) - 1)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average of a :meth:`forward_features` map, then the classifier unless ``pre_logits``."""
        x = self.head_drop(x.mean(dim=(-2, -1)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_features) pooled embedding when ``num_classes == 0``, else (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Any] | tuple[torch.Tensor, list[Any]]:
        """Stage maps, as timm's hierarchical models (Swin, ConvNeXt) return them.

        Args:
            indices: stages to return (0..3, negative from the end), the last ``n`` if an int, all if ``None``.
            return_prefix_tokens: return ``(map, pooled)`` pairs, ``pooled`` (B, 1, C) being the map's global
                average, standing in for the CLS token that ViT consumers read as ``prefix[:, 0]``.
            norm: apply the final norm to the last stage's map (it is sized for that stage only; earlier
                stages are returned un-normed, as in timm).
            stop_early: skip the stages after the last requested one (then nothing final is returned normed).
            output_fmt: ``"NCHW"`` (B, C_i, h_i, w_i) or ``"NHWC"``.
            intermediates_only: return only the list; otherwise ``(forward_features-like map, list)``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"Unknown output_fmt '{output_fmt}'. Valid formats are ['NCHW', 'NHWC']")
        take, last = feature_take_indices(len(self.levels), indices)
        last_stage = len(self.levels) - 1
        maps = list(self._stage_maps(x, last if stop_early or intermediates_only else last_stage))

        def formatted(stage_map: torch.Tensor, normed: bool) -> torch.Tensor:
            stage_map = self.norm(stage_map) if normed else stage_map
            return stage_map.permute(0, 3, 1, 2) if output_fmt == "NCHW" else stage_map

        intermediates: list[Any] = [formatted(maps[i], norm and i == last_stage) for i in take]
        if return_prefix_tokens:
            spatial = (-2, -1) if output_fmt == "NCHW" else (1, 2)
            intermediates = [(m, m.mean(dim=spatial)[:, None, :]) for m in intermediates]
        if intermediates_only:
            return intermediates
        return formatted(maps[-1], len(maps) == len(self.levels)), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (timm's ``features_only`` path); returns the indices."""
        take, last = feature_take_indices(len(self.levels), indices)
        prune_end = last < len(self.levels) - 1
        self.levels = self.levels[:last + 1]
        if prune_end:
            self.levels[-1].downsample = None
            self.num_features = self.head_hidden_size = self.stage_dims[last]
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage only
        if prune_head or prune_end:
            self.reset_classifier(0)
        return take


# ------------------------------------------------------------------------------------------------- registry
def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
        "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj.0", "classifier": "head", **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in ("nat_mini", "nat_tiny", "dinat_mini", "dinat_tiny")})

# DiNAT's dilations for 224 px (stage maps 56, 28, 14, 7 with kernel 7): the largest that fits, alternating with 1.
_DINAT_MINI = ((1, 8, 1), (1, 4, 1, 4), (1, 2) * 3, (1,) * 5)
_DINAT_TINY = ((1, 8, 1), (1, 4, 1, 4), (1, 2) * 9, (1,) * 5)


def _create_nat(variant: str, pretrained: bool, **kwargs: Any) -> NAT:
    if pretrained:
        raise ValueError(f"{variant}: no pretrained weights are bundled and dinomed never downloads; build with "
                         "pretrained=False and load a local checkpoint with load_state_dict")
    return build_model_with_cfg(
        NAT, variant, pretrained=False, feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3)}, **kwargs
    )


@register_model
def nat_mini(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Mini (20M params at 1000 classes): depths 3-4-6-5, kernel 7."""
    args = {"depths": (3, 4, 6, 5), "num_heads": (2, 4, 8, 16), "embed_dim": 64, "mlp_ratio": 3.0, "kernel_size": 7}
    return _create_nat("nat_mini", pretrained, **{**args, **kwargs})


@register_model
def nat_tiny(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Tiny (28M params at 1000 classes): depths 3-4-18-5, kernel 7."""
    args = {"depths": (3, 4, 18, 5), "num_heads": (2, 4, 8, 16), "embed_dim": 64, "mlp_ratio": 3.0, "kernel_size": 7}
    return _create_nat("nat_tiny", pretrained, **{**args, **kwargs})


@register_model
def dinat_mini(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Mini: NAT-Mini with DiNAT's alternating dilations."""
    args = {"depths": (3, 4, 6, 5), "num_heads": (2, 4, 8, 16), "embed_dim": 64, "mlp_ratio": 3.0, "kernel_size": 7,
            "dilations": _DINAT_MINI}
    return _create_nat("dinat_mini", pretrained, **{**args, **kwargs})


@register_model
def dinat_tiny(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Tiny: NAT-Tiny with DiNAT's alternating dilations."""
    args = {"depths": (3, 4, 18, 5), "num_heads": (2, 4, 8, 16), "embed_dim": 64, "mlp_ratio": 3.0, "kernel_size": 7,
            "dilations": _DINAT_TINY}
    return _create_nat("dinat_tiny", pretrained, **{**args, **kwargs})
