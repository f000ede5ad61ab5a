"""Projection head for DINO and task heads (segmentation, depth, classification) on a ViT backbone."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from dinomed.registry import Registry


class DINOProjectionHead(nn.Module):
    """DINO head: 3-layer MLP -> L2-normalised bottleneck -> weight-normalised linear layer (Caron et al. 2021).

    ``norm_last_layer=True`` fixes the weight-norm gain to 1, which the paper found stabilises ViT-S training.

    Example:
        >>> head = DINOProjectionHead(384, out_dim=65536)
        >>> logits = head(torch.randn(8, 384))  # (8, 65536)
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        *,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        nlayers: int = 3,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < nlayers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = not norm_last_layer

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


# ----------------------------------------------------------------------------------------------- task heads
# A task head reads ``features``: one ``(patches (B, C, h, w), cls (B, C))`` pair per selected block, as
# produced by :func:`backbone_features`, and returns full-resolution outputs for an ``(H, W)`` image.
Features = list[tuple[torch.Tensor, torch.Tensor]]
HEADS: Registry[type["TaskHead"]] = Registry("task", "tasks", attribute="task")


def register_head(name: str) -> Callable[[type["TaskHead"]], type["TaskHead"]]:
    """Class decorator adding a task head to :data:`HEADS` under ``name`` (``seg``, ``depth``, ``cls``)."""
    return HEADS.register(name)


def evenly_spaced_blocks(depth: int, count: int = 4) -> list[int]:
    """``count`` block indices spread over ``depth`` blocks ending at the last, e.g. 12 -> [2, 5, 8, 11]."""
    count = min(count, depth)
    return sorted({depth - 1 - round(i * depth / count) for i in range(count)})


def backbone_features(backbone: nn.Module, images: torch.Tensor, blocks: list[int]) -> Features:
    """Normalised patch maps and CLS tokens of ``blocks`` (timm ``forward_intermediates``)."""
    outputs = backbone.forward_intermediates(
        images, indices=blocks, return_prefix_tokens=True, norm=True, output_fmt="NCHW", intermediates_only=True
    )
    return [(patches, prefix[:, 0]) for patches, prefix in outputs]


class TaskHead(nn.Module):
    """Base of the task heads: which blocks they read and which sample key is their target."""

    task: str = ""
    target: str = ""

    def __init__(self, embed_dim: int, blocks: list[int]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a task head needs at least one backbone block")
        self.embed_dim, self.blocks = embed_dim, list(blocks)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _FusionDecoder(nn.Module):
    """Concat multi-block maps -> 1x1 conv/BN/ReLU -> x4 upsample -> 3x3 conv refinement -> 1x1 to ``c_out``.

    The light DPT-style fusion used by DINOv2's linear-multi-block heads, with one refinement conv so edges are
    not a blocky 16x upsampling of the patch grid.
    """

    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        self.fuse = _conv_bn_relu(c_in, hidden, 1)
        self.refine = _conv_bn_relu(hidden, hidden // 2, 3)
        self.out = nn.Conv2d(hidden // 2, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.fuse(x), scale_factor=4, mode="bilinear", align_corners=False)
        return self.out(self.refine(x))


@register_head("seg")
class SegmentationHead(TaskHead):
    """Semantic segmentation: fused multi-block patch features upsampled to full resolution.

    ``num_classes`` counts background, so a binary polyp mask uses 2. Returns logits (B, K, H, W).

    Example:
        >>> head = SegmentationHead(384, blocks=[2, 5, 8, 11], num_classes=2)
        >>> logits = head(backbone_features(vit, x, head.blocks), x.shape[-2:])
    """

    target = "mask"

    def __init__(self, embed_dim: int, blocks: list[int], *, num_classes: int = 2, hidden: int = 128) -> None:
        super().__init__(embed_dim, blocks)
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.decoder = _FusionDecoder(embed_dim * len(blocks), hidden, num_classes)

    def forward(self, features: Features, size: tuple[int, int]) -> torch.Tensor:
        x = self.decoder(torch.cat([patches for patches, _ in features], dim=1))
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@register_head("depth")
class DepthHead(TaskHead):
    """Monocular depth as classification over depth bins (AdaBins / DINOv2 / Surgical-DINO).

    Each block contributes its patch map with the CLS token concatenated to every patch; logits over ``bins``
    linearly spaced depth bins are soft-maxed and the depth is the probability-weighted bin centre, which gives
    a continuous depth and a stable training signal. Returns depth (B, 1, H, W) in ``[min_depth, max_depth]``.
    """

    target = "depth"

    def __init__(self, embed_dim: int, blocks: list[int], *, bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, hidden: int = 128) -> None:
        super().__init__(embed_dim, blocks)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.register_buffer("centers", torch.linspace(min_depth, max_depth, bins), persistent=False)
        self.decoder = _FusionDecoder(2 * embed_dim * len(blocks), hidden, bins)

    def forward(self, features: Features, size: tuple[int, int]) -> torch.Tensor:
        maps = [torch.cat([p, cls[:, :, None, None].expand_as(p)], dim=1) for p, cls in features]
        probs = self.decoder(torch.cat(maps, dim=1)).float().softmax(dim=1)
        depth = torch.einsum("bkhw,k->bhw", probs, self.centers)[:, None]
        return F.interpolate(depth, size=tuple(size), mode="bilinear", align_corners=False)


@register_head("cls")
class ClassificationHead(TaskHead):
    """Image classification: linear layer on the CLS token concatenated with the mean patch token (DINO
    linear evaluation). Returns logits (B, K)."""

    target = "label"

    def __init__(self, embed_dim: int, blocks: list[int], *, num_classes: int = 2) -> None:
        super().__init__(embed_dim, blocks[-1:])
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.linear = nn.Linear(2 * embed_dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Features, size: tuple[int, int]) -> torch.Tensor:
        patches, cls = features[-1]
        return self.linear(torch.cat([cls, patches.mean(dim=(2, 3))], dim=1))


def build_head(task: str, embed_dim: int, depth: int, *, blocks: list[int] | None = None, **kwargs) -> TaskHead:
    """The one construction path of task heads; ``blocks`` defaults to 4 evenly spaced ones (last for ``cls``)."""
    if task not in HEADS:  # same wording as the task's losses and metrics
        raise ValueError(f"Unknown task '{task}'. Valid tasks are {HEADS.names()}")
    blocks = list(blocks) if blocks else evenly_spaced_blocks(depth)
    bad = [b for b in blocks if not -depth <= b < depth]
    if bad:
        raise ValueError(f"head blocks {bad} out of range for a backbone with {depth} blocks (0..{depth - 1})")
    return HEADS[task](embed_dim, [b % depth for b in blocks], **kwargs)
