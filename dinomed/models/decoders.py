"""Dense decoders on a ViT's patch grid and the features they read (nn building blocks of the task heads).

A decoder reads ``features``: one ``(patches (B, C, h, w), cls (B, C))`` pair per selected backbone block, as
produced by :func:`backbone_features`, and returns maps at the patch grid's resolution or finer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Features", "FusionDecoder", "backbone_features", "conv_bn_relu", "evenly_spaced_blocks", "stack_maps"]

Features = list[tuple[torch.Tensor, torch.Tensor]]


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


def stack_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Maps of one or several resolutions concatenated along channels at the finest one (a ViT's blocks share a
    grid; NAT's stages halve it)."""
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    return torch.cat([m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                      for m in maps], dim=1)


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FusionDecoder(nn.Module):
    """Concat multi-block maps -> 1x1 conv/BN/ReLU -> x4 upsample -> 3x3 conv refinement -> 1x1 to ``c_out``.

    The light fusion used by DINOv2's linear-multi-block heads, with one refinement conv so edges are not a
    blocky 16x upsampling of the patch grid.
    """

    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(c_in, hidden, 1)
        self.refine = conv_bn_relu(hidden, hidden // 2, 3)
        self.out = nn.Conv2d(hidden // 2, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.fuse(x), scale_factor=4, mode="bilinear", align_corners=False)
        return self.out(self.refine(x))
