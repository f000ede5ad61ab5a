"""Optimiser helpers of DINO pretraining, with the reference's semantics (facebookresearch/dino ``utils.py``).

* :func:`adamw`: AdamW with torch's fused kernel where it has one (CPU, CUDA): one pass over each parameter
  instead of about ten per-tensor ops; on a 2-core CPU the update of ViT-Ti + a 65536-prototype head (27 M
  parameters) drops from ~570 ms to ~45 ms.
* :func:`param_groups`: weight decay only on matrices; biases and 1-D (norm) parameters are not decayed; optional
  layer-wise lr decay over the backbone's blocks (continued pretraining keeps the early layers close to the init).
* :func:`clip_gradients`: each parameter's gradient norm is clipped to ``clip`` on its own, not the global norm.
* :func:`cancel_last_layer_gradients`: the head's last layer is frozen for the first epochs, which the paper found
  stabilises the start of training (Caron et al. 2021, App. "freezing the last layer").

Example:
    >>> optimizer = adamw(param_groups(student), device=torch.device("cpu"))
    >>> clip_gradients(student, 3.0); cancel_last_layer_gradients(student.head, epoch, freeze_last_layer=1)
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["adamw", "param_groups", "layer_ids", "clip_gradients", "cancel_last_layer_gradients"]

FUSED_DEVICES = ("cpu", "cuda")
"""Device types with a fused AdamW kernel in torch."""


def adamw(groups: list[dict], device: torch.device, **kwargs: float) -> torch.optim.AdamW:
    """AdamW over ``groups``; fused on :data:`FUSED_DEVICES` (same update, far fewer memory passes)."""
    return torch.optim.AdamW(groups, fused=device.type in FUSED_DEVICES, **kwargs)


def _is_regularized(name: str, param: torch.Tensor) -> bool:
    return not name.endswith(".bias") and param.ndim > 1


def layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """``(layer of each parameter name, number of blocks)`` for layer-wise lr decay, in the order the blocks run:
    0 for what precedes the first block (patch embedding, class / register tokens, positions), ``i + 1`` for the
    ``i``-th block (``blocks.i`` of a ViT; NAT's ``levels.s.blocks.j`` counted across stages), the next block's
    layer for what sits between blocks (NAT's downsamplers), ``depth + 1`` for what follows the last one."""
    names = [name for name, _ in backbone.named_parameters()]
    blocks = list(dict.fromkeys(m.group(1) for m in map(re.compile(r"(.*?blocks\.\d+)\.").match, names) if m))
    index = {prefix: i + 1 for i, prefix in enumerate(blocks)}
    ids, seen = {}, 0
    for name in names:
        block = re.match(r"(.*?blocks\.\d+)\.", name)
        if block:
            seen = index[block.group(1)]
        ids[name] = seen if block else (seen + 1 if seen else 0)
    last = max((i for n, i in ids.items() if re.match(r".*?blocks\.\d+\.", n)), default=0)
    return {n: len(blocks) + 1 if i > last else i for n, i in ids.items()}, len(blocks)


def param_groups(network: nn.Module, *, layer_decay: float = 1.0) -> list[dict]:
    """Trainable parameters of a student (``backbone`` + ``head``) in AdamW groups.

    Each group carries ``regularized`` (the trainer sets the scheduled weight decay on those only; biases and
    norms get none), ``backbone`` (frozen while ``train.freeze_backbone_epochs`` lasts) and ``lr_scale``:
    ``layer_decay ** (depth + 1 - layer)`` for backbone parameters (:func:`layer_ids`; BEiT / DINOv2 layer-wise
    decay; 1 when ``layer_decay`` is 1), 1 for the head. Frozen parameters (``requires_grad=False``) are left out.
    """
    layers, depth = layer_ids(getattr(network, "backbone", network))
    groups: dict[tuple[bool, bool, float], list[torch.Tensor]] = {}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = name.startswith("backbone.")
        scale = layer_decay ** (depth + 1 - layers[name.removeprefix("backbone.")]) if in_backbone else 1.0
        groups.setdefault((_is_regularized(name, param), in_backbone, scale), []).append(param)
    if not groups:
        raise ValueError("param_groups: the network has no trainable parameters")
    return [{"params": params, "regularized": regularized, "backbone": backbone, "lr_scale": scale,
             **({} if regularized else {"weight_decay": 0.0})}
            for (regularized, backbone, scale), params in groups.items()]


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> list[float]:
    """Scale each gradient whose L2 norm exceeds ``clip`` down to ``clip``; returns the norms before clipping.

    Same rule as the reference (``coef = clip / (norm + 1e-6)``, applied when below 1), computed with fused
    ``torch._foreach`` kernels and a single device-to-host transfer for the norms.
    """
    if clip <= 0:
        raise ValueError(f"clip_gradients: clip must be > 0 (0 disables clipping in optim.clip_grad), got {clip}")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return []
    norms = torch.stack([n.float() for n in torch._foreach_norm(grads, 2.0)])
    coefs = (clip / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [c.to(g.dtype) for c, g in zip(coefs.unbind(), grads)])
    return norms.tolist()


def cancel_last_layer_gradients(head: nn.Module, epoch: int, freeze_last_layer: int) -> None:
    """Drop the gradients of parameters named ``*last_layer*`` while ``epoch < freeze_last_layer``.

    Gradients are set to ``None`` (as the reference), not zero: AdamW skips parameters without a gradient, whereas
    a zero gradient would still let weight decay and stale Adam moments move the frozen layer.
    """
    if epoch >= freeze_last_layer:
        return
    for name, param in head.named_parameters():
        if "last_layer" in name:
            param.grad = None
