"""LoRA adapters on a timm ViT via peft, with timm's fused ``qkv`` projection split into ``q``, ``k``, ``v``.

LoRA (Hu et al. 2021) learns a low-rank update ``BA`` next to frozen weights; Hu et al. found rank 4 on the key
and value projections best, Surgical-DINO (Cui et al. 2024) adapts query and value. timm fuses the three
projections into one ``Linear``, so adapting only ``k`` and ``v`` needs them as separate modules first:
:func:`split_qkv` does that without changing the outputs, :func:`fuse_qkv_state` undoes it for export.

Example:
    >>> model = apply_lora(vit, LoraSettings(targets=("k", "v"), r=4))
    >>> model.save_pretrained("run/model/adapter")   # adapter_config.json + adapter_model.safetensors
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from timm.layers import Attention
from timm.layers.attention import maybe_add_mask, resolve_self_attn_mask
from torch import nn

from dinomed.models.nat import NeighborhoodAttention2D

QKV = ("q", "k", "v")
BLOCK = re.compile(r"(.*\.)?blocks\.\d+\.")


class SplitQKVAttention(nn.Module):
    """timm ``Attention`` with three projections instead of one fused ``qkv``; same maths, same outputs."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise ValueError("gated attention is not supported by the q/k/v split")
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.attn_dim = attn.num_heads * attn.head_dim
        self.fused_attn = attn.fused_attn
        fused = attn.qkv
        bias = fused.bias is not None
        for index, name in enumerate(QKV):
            linear = nn.Linear(fused.in_features, self.attn_dim, bias=bias,
                               device=fused.weight.device, dtype=fused.weight.dtype)
            rows = slice(index * self.attn_dim, (index + 1) * self.attn_dim)
            with torch.no_grad():
                linear.weight.copy_(fused.weight[rows])
                if bias:
                    linear.bias.copy_(fused.bias[rows])
            setattr(self, name, linear)
        self.q_norm, self.k_norm, self.norm = attn.q_norm, attn.k_norm, attn.norm
        self.attn_drop, self.proj, self.proj_drop = attn.attn_drop, attn.proj, attn.proj_drop

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.q_norm(self._heads(self.q(x))), self.k_norm(self._heads(self.k(x))), self._heads(self.v(x))
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                               dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = maybe_add_mask(attn, resolve_self_attn_mask(tokens, attn, attn_mask, is_causal))
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = self.norm(x.transpose(1, 2).reshape(batch, tokens, self.attn_dim))
        return self.proj_drop(self.proj(x))


class SplitQKV(nn.Module):
    """A fused ``qkv`` Linear as three Linear modules ``q``, ``k``, ``v`` whose outputs are concatenated: the same
    function, so the attention around it (NAT's :class:`~dinomed.models.nat.NeighborhoodAttention2D`) is untouched
    while peft can adapt ``k`` and ``v`` alone."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        width = fused.out_features // 3
        for index, name in enumerate(QKV):
            linear = nn.Linear(fused.in_features, width, bias=fused.bias is not None,
                               device=fused.weight.device, dtype=fused.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(fused.weight[index * width:(index + 1) * width])
                if fused.bias is not None:
                    linear.bias.copy_(fused.bias[index * width:(index + 1) * width])
            setattr(self, name, linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def split_qkv(model: nn.Module) -> nn.Module:
    """Give every attention of ``model`` separate ``q``, ``k``, ``v`` projections (in place; returns ``model``):
    timm's ``Attention`` becomes :class:`SplitQKVAttention`, NAT's neighbourhood attention gets a :class:`SplitQKV`."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Attention):
                setattr(module, child_name, SplitQKVAttention(child))
            elif isinstance(child, NeighborhoodAttention2D) and isinstance(child.qkv, nn.Linear):
                child.qkv = SplitQKV(child.qkv)
    return model


def fuse_qkv_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of a split model with ``q/k/v`` concatenated back into the fused ``qkv`` of timm's and NAT's
    attention (``attn.q`` for timm, ``attn.qkv.q`` for NAT)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.match(r"(.*attn)\.(?:qkv\.)?([qkv])\.(weight|bias)$", key)
        if match is None:
            out[key] = value
        elif match.group(2) == "q":
            base, kind = match.group(1), match.group(3)
            inner = f"{base}.qkv" if f"{base}.qkv.q.{kind}" in state else base
            out[f"{base}.qkv.{kind}"] = torch.cat([state[f"{inner}.{n}.{kind}"] for n in QKV], dim=0)
    return out


@dataclass(frozen=True)
class LoraSettings:
    """Which linear layers of the blocks get adapters, and their rank / scale / dropout."""

    targets: tuple[str, ...] = ("k", "v")
    r: int = 4
    alpha: float = 4.0
    dropout: float = 0.0


def _block_linears(model: nn.Module) -> list[str]:
    """Names of the Linear layers inside the blocks (``blocks.i.`` of a ViT, ``levels.s.blocks.j.`` of NAT)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and BLOCK.match(name)]


def block_linear_names(model: nn.Module) -> list[str]:
    """Short names (``q``, ``k``, ``v``, ``qkv``, ``proj``, ``fc1``, ``fc2``) of the Linear layers in the blocks."""
    return sorted({name.rsplit(".", 1)[-1] for name in _block_linears(model)})


def apply_lora(model: nn.Module, settings: LoraSettings) -> PeftModel:
    """Split ``qkv`` when q/k/v are targeted, then wrap ``model`` with peft LoRA; only adapters train.

    Raises ``ValueError`` listing the available layer names when a target matches no module.
    """
    if set(settings.targets) & set(QKV):
        split_qkv(model)
    available = block_linear_names(model)
    unknown = [t for t in settings.targets if t not in available]
    if unknown:
        raise ValueError(f"LoRA target(s) {unknown} match no Linear layer in the backbone blocks; "
                         f"available: {', '.join(available)}")
    names = [name for name in _block_linears(model) if name.rsplit(".", 1)[-1] in settings.targets]
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=names)
    return get_peft_model(model, config)


def load_lora(model: nn.Module, adapter_dir: str, *, trainable: bool = False) -> PeftModel:
    """Attach adapters saved by ``PeftModel.save_pretrained`` to a plain backbone (split first when needed)."""
    config = LoraConfig.from_pretrained(adapter_dir)
    if {str(t).rsplit(".", 1)[-1] for t in config.target_modules} & set(QKV):
        split_qkv(model)
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)


def merge_lora(model: PeftModel) -> dict[str, torch.Tensor]:
    """Fold adapters into the weights; returns a plain timm state dict (fused ``qkv``) loadable by timm."""
    merged = model.merge_and_unload()
    return fuse_qkv_state({k: v.detach().contiguous().cpu() for k, v in merged.state_dict().items()})
