"""Last-block CLS self-attention maps, "keep 60 % of the mass" masks and their Jaccard index against ground truth.

DINO (Caron et al., 2021, Fig. 1/3, Table 7) shows that the CLS token's attention over patches in the last block
segments objects without supervision; thresholding each head's map to keep 60 % of its mass and comparing with
ground-truth masks (Jaccard) measures it. Here the ground truth is e.g. CVC-ClinicDB's polyp masks.

How the weights are obtained: timm's ``Attention`` uses fused ``scaled_dot_product_attention`` and never
materialises the weights, so a forward pre-hook on the last block's ``attn`` captures its (normed) input tokens and
the weights are recomputed from that module's own ``qkv``, ``q_norm``/``k_norm`` and ``scale``. The model itself is
left untouched (no switching ``fused_attn`` off), so this works on any timm ViT, including LoRA-wrapped ones whose
``qkv`` is a peft layer.

NAT has no CLS token and each pixel attends only to its k x k neighbourhood, so its map is the attention each
position of the last stage *receives* from all queries of the last block (the sum of the windows' weights that
fall on it): where the final layer reads most, the positions the pooled embedding is built from.

Example:
    >>> attn = last_block_attention(backbone, images)       # (B, heads, Hp, Wp)
    >>> masks = mass_masks(attn, keep=0.6)                   # bool, same shape
    >>> jaccard(upsample(masks, images.shape[-2:])[0].any(0), gt_mask)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinomed.models.backbones import is_hierarchical, is_vit


def has_attention_maps(backbone: nn.Module) -> bool:
    """Whether :func:`last_block_attention` can draw ``backbone`` (a timm ViT or a NAT)."""
    return is_hierarchical(backbone) or is_vit(backbone)


def _last_attention(backbone: nn.Module) -> nn.Module:
    blocks = backbone.levels[-1].blocks if is_hierarchical(backbone) else getattr(backbone, "blocks", None)
    if is_hierarchical(backbone):
        return blocks[-1].attn
    attn = getattr(blocks[-1], "attn", None) if blocks is not None and len(blocks) else None
    if attn is None or not all(hasattr(attn, a) for a in ("qkv", "num_heads", "scale")):
        raise ValueError(
            f"{type(backbone).__name__} exposes no ViT self-attention (expected blocks[-1].attn with qkv, num_heads, "
            "scale as in timm's VisionTransformer); attention maps need a ViT backbone, not a CNN"
        )
    return attn


@contextmanager
def _captured_input(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    store: dict[str, torch.Tensor] = {}

    def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
        store["x"] = args[0]

    handle = module.register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@torch.no_grad()
def last_block_attention(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """CLS -> patch attention weights of every head of the last block, ``(B, heads, Hp, Wp)``; rows sum to < 1
    because the CLS token's attention to itself (and to register tokens) is left out. For NAT: the attention each
    last-stage position receives (see the module docstring)."""
    attn = _last_attention(backbone)
    backbone.eval()
    with _captured_input(attn) as store:
        backbone.forward_features(images)
    x = store["x"]
    if is_hierarchical(backbone):
        weights, keys = attn.attention_weights(x)  # (B, heads, HW, window), (HW, window)
        batch, heads = weights.shape[:2]
        received = torch.zeros(batch, heads, x.shape[1] * x.shape[2], dtype=weights.dtype, device=weights.device)
        received.scatter_add_(2, keys.flatten().expand(batch, heads, -1), weights.flatten(2))
        return received.reshape(batch, heads, x.shape[1], x.shape[2])
    batch, tokens, _ = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    prefix = getattr(backbone, "num_prefix_tokens", 1)
    ph, pw = backbone.patch_embed.patch_size
    grid = (images.shape[-2] // ph, images.shape[-1] // pw)
    return weights[:, :, 0, prefix:].reshape(batch, heads, *grid)


def mass_masks(attention: torch.Tensor, keep: float = 0.6) -> torch.Tensor:
    """Boolean masks keeping, per map, the smallest set of highest-attention patches holding ``keep`` of its mass.

    Works on any ``(..., Hp, Wp)`` map stack; DINO uses ``keep=0.6``.
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be a fraction of the attention mass in [0, 1], got {keep}")
    flat = attention.flatten(-2)
    values, order = flat.sort(dim=-1, descending=True)
    values = values / values.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    mass_before = values.cumsum(dim=-1) - values
    kept_sorted = mass_before < keep
    kept = torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)
    return kept.reshape(attention.shape)


def upsample(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Patch-grid maps ``(B, heads, Hp, Wp)`` to pixels ``(B, heads, H, W)``, nearest (each patch a block), as DINO."""
    out = F.interpolate(maps.float(), size=tuple(size), mode="nearest")
    return out.bool() if maps.dtype == torch.bool else out


def jaccard(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Intersection over union of two boolean masks; two empty masks agree perfectly (1.0)."""
    pred, target = pred.bool(), target.bool()
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: prediction {tuple(pred.shape)}, ground truth {tuple(target.shape)}")
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union


def mask_jaccards(masks: torch.Tensor, truth: torch.Tensor) -> tuple[list[float], float]:
    """Jaccard of each head's mask ``(heads, H, W)`` and of their union against the boolean ``truth`` ``(H, W)``."""
    return [jaccard(m, truth) for m in masks], jaccard(masks.any(0), truth)


def jaccard_summary(per_head: list[list[float]], union: list[float], keep: float) -> dict[str, Any]:
    """Means over images; the best head is the one with the highest mean (a fixed head, as the DINO paper)."""
    heads = torch.tensor(per_head).mean(0)
    best = int(heads.argmax())
    return {
        "keep": keep,
        "num_images": len(per_head),
        "per_head": heads.tolist(),
        "best_head": best,
        "best_head_jaccard": float(heads[best]),
        "union_jaccard": sum(union) / len(union),
    }


@torch.no_grad()
def attention_jaccard(
    backbone: nn.Module,
    dataset: Any,
    transform: Any,
    *,
    keep: float = 0.6,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Mean Jaccard of each head's mass mask, of the best head and of the heads' union vs ``mask > 0``.

    ``dataset`` yields samples with ``image`` and ``mask`` (an :class:`~dinomed.data.records.ImageDataset` with
    masks); ``transform(image, mask=mask)`` returns ``{"image", "mask"}`` at the model's input size.
    """
    if len(dataset) == 0:
        raise ValueError("attention_jaccard: the dataset is empty")
    backbone = backbone.eval().to(device)
    per_head: list[list[float]] = []
    union: list[float] = []
    for index in range(len(dataset)):
        sample = dataset[index]
        if sample.get("mask") is None:
            raise ValueError(f"attention_jaccard: sample {index} ({sample.get('meta', {}).get('path', '?')}) has no mask")
        out = transform(sample["image"], mask=sample["mask"])
        image, truth = out["image"].unsqueeze(0).to(device), torch.as_tensor(out["mask"]) > 0
        masks = upsample(mass_masks(last_block_attention(backbone, image), keep), image.shape[-2:])[0].cpu()
        heads, both = mask_jaccards(masks, truth)
        per_head.append(heads)
        union.append(both)
    return jaccard_summary(per_head, union, keep)
