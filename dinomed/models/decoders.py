"""Dense decoders on a ViT's patch grid and the features they read (nn building blocks of the task heads).

A decoder reads ``features``: one ``(patches (B, C, h, w), cls (B, C))`` pair per selected backbone block, as
produced by :func:`backbone_features`, and returns maps at the patch grid's resolution or finer.

Two decoders: :class:`FusionDecoder` (concat + one x4 upsample: cheap, blurry edges) and :class:`DPTDecoder`
(DPT's reassemble-and-fuse pyramid, optionally with a :class:`DetailBranch` on the pixels for sharp edges).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DPTDecoder", "DetailBranch", "FeatureFusionBlock", "Features", "FusionDecoder", "Reassemble",
           "ResidualConvUnit", "backbone_features", "conv_bn_relu", "evenly_spaced_blocks", "stack_maps"]

Features = list[tuple[torch.Tensor, torch.Tensor]]

LEVEL_STRIDES = (4, 8, 16, 32)  # DPT's pyramid, relative to the input image, finest first


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
    return torch.cat([m if m.shape[-2:] == size else _resize(m, tuple(size)) for m in maps], dim=1)


def conv_bn_relu(c_in: int, c_out: int, kernel: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


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


class Reassemble(nn.Module):
    """One feature map at ``stride`` projected (1x1 conv) to ``width`` channels and resampled to ``target``.

    DPT's reassemble step (Ranftl et al., ICCV 2021) with its resampling generalised to any pair of strides:

    * ``upsample``: the map is coarser by a power of 2 -> transposed conv, kernel = stride = the factor;
    * ``downsample``: finer by a power of 2 -> that many 3x3 stride-2 convs;
    * ``identity``: the strides are equal;
    * ``resize``: any other ratio (ViT/14 to 1/4 is x3.5) -> bilinear resize to the exact target size, then a
      3x3 conv, since no integer kernel maps 14 px patches onto a 4 px grid.

    Conv arithmetic can miss the target by one (a 7x7 grid at 1/32 of 112 px gives 4x4 = ceil(3.5)): the result
    is bilinearly aligned to the exact ``size`` passed to :meth:`forward`.
    """

    def __init__(self, dim: int, width: int, stride: int, target: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(dim, width, 1)
        ratio = Fraction(stride, target)
        if ratio == 1:
            self.mode, self.resample = "identity", nn.Identity()
        elif ratio.denominator == 1 and _is_power_of_two(ratio.numerator):
            factor = ratio.numerator
            self.mode, self.resample = "upsample", nn.ConvTranspose2d(width, width, factor, stride=factor)
        elif ratio.numerator == 1 and _is_power_of_two(ratio.denominator):
            steps = ratio.denominator.bit_length() - 1
            self.mode = "downsample"
            self.resample = nn.Sequential(*(nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(steps)))
        else:
            self.mode, self.resample = "resize", nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.project(x)
        if self.mode == "resize":
            x = _resize(x, size)
        x = self.resample(x)
        return x if tuple(x.shape[-2:]) == size else _resize(x, size)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class ResidualConvUnit(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3, plus the input (RefineNet, Lin et al., CVPR 2017; DPT's fusion unit).

    No BatchNorm, as in DPT's fusion: the heads train with batches of 4-8, where batch statistics are noisy and
    differ between training and evaluation.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """DPT's fusion block: ``skip`` (after its own residual unit) plus the coarser ``path``, a residual unit,
    bilinear resize to the next finer level's ``size``, 1x1 conv to ``out_width``.

    The coarsest block has no coarser path, so its skip goes straight into the second unit (as DPT computes it).
    """

    def __init__(self, width: int, out_width: int | None = None, *, coarsest: bool = False) -> None:
        super().__init__()
        self.skip_unit = nn.Identity() if coarsest else ResidualConvUnit(width)
        self.refine = ResidualConvUnit(width)
        self.out = nn.Conv2d(width, out_width or width, 1)

    def forward(self, skip: torch.Tensor, path: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        x = self.skip_unit(skip)
        if path is not None:
            x = x + path
        x = self.refine(x)
        return self.out(x if size is None else _resize(x, size))


class DetailBranch(nn.Module):
    """Strided conv stem on the input image giving 1/2 and 1/4 maps that carry pixel-accurate edges.

    A spatial prior in the sense of ViT-Adapter (Chen et al., ICLR 2023): a ViT sees the image through 16 px
    patches, so a polyp's boundary must come from the pixels. Two conv3x3 stride 2 -> BN -> ReLU stages; a
    ``(H, W)`` image gives maps of exactly ``ceil(H / 2)`` and ``ceil(H / 4)`` (likewise for ``W``).

    Example:
        >>> half, quarter = DetailBranch(3)(torch.rand(2, 3, 112, 112))
        >>> half.shape, quarter.shape    # (2, 32, 56, 56), (2, 64, 28, 28)
    """

    def __init__(self, in_channels: int, widths: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        self.widths = widths
        self.stage_half = conv_bn_relu(in_channels, widths[0], 3, stride=2)
        self.stage_quarter = conv_bn_relu(widths[0], widths[1], 3, stride=2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.stage_half(image)
        return half, self.stage_quarter(half)


class DPTDecoder(nn.Module):
    """Dense Prediction Transformer decoder (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV
    2021), the dense head of DINOv2 and Depth Anything, over any 4 feature maps of known stride.

    Reassemble: map ``i`` -> 1x1 conv to width ``(hidden/2, hidden, hidden, hidden)[i]`` -> resampled to 1/4,
    1/8, 1/16, 1/32 of the image (see :class:`Reassemble`) -> 3x3 conv to ``hidden``. DPT grows widths
    (96, 192, 384, 768 for ViT-B) so that the coarse levels carry more channels; here they stop at ``hidden``
    because the 1/32 level's stride-2 conv alone would cost 2.4 M parameters at ``4 * hidden`` while everything
    is projected to ``hidden`` one conv later; the 1/4 level keeps DPT's halving since it has the most positions.
    Fusion: coarse-to-fine :class:`FeatureFusionBlock`, each ending with a x2 upsample, so the 1/4 block
    already yields a 1/2 map. Head: conv3x3 to ``hidden/2`` -> ReLU -> bilinear resize to ``(H, W)`` ->
    conv3x3 to 32 -> ReLU -> conv1x1 to ``out_channels``.

    With ``detail=C`` a :class:`DetailBranch` on the ``C``-channel image adds its 1/4 map to the 1/4 fusion
    step's skip and its 1/2 map in an extra fusion step at 1/2. That step runs at ``hidden/2`` (DPT's ``expand``
    halving) so it costs about as much as the 1/4 step, on 4x the positions.

    Parameters for ViT-Ti (dims 4 x 192, stride 16) and one output channel: 3.11 M with ``hidden=128``
    (3.32 M with ``detail=3``), of which the fusion's seven residual units are 2.07 M; they grow with
    ``hidden**2``: 1.77 M (1.92 M) at ``hidden=96``, 0.80 M (0.90 M) at ``hidden=64``. Compute at 112 px:
    1.25 GMAC (1.72 with detail) at ``hidden=128``, 0.37 (0.53) at ``hidden=64``, against 0.27 for ViT-Ti itself;
    it grows with the image area.

    Args:
        dims: channels of each of the 4 feature maps.
        strides: stride of each map relative to the input image: (16,) * 4 for ViT/16, (14,) * 4 for ViT/14,
            (4, 8, 16, 32) for a hierarchical backbone such as NAT.
        hidden: fusion width (DPT's ``features``; 256 in the paper).
        out_channels: output channels (class logits, depth bins).
        detail: channels of the input image when a detail branch is wanted, ``None`` for none.

    Example:
        >>> decoder = DPTDecoder([192] * 4, [16] * 4, out_channels=2, detail=3)
        >>> maps = [p for p, _ in backbone_features(vit, x, [2, 5, 8, 11])]
        >>> logits = decoder(maps, x.shape[-2:], image=x)    # (B, 2, H, W)
    """

    def __init__(self, dims: Sequence[int], strides: Sequence[int], *, hidden: int = 128, out_channels: int,
                 detail: int | None = None) -> None:
        super().__init__()
        dims, strides = [int(d) for d in dims], [int(s) for s in strides]
        if len(dims) != len(LEVEL_STRIDES) or len(strides) != len(LEVEL_STRIDES):
            raise ValueError(f"DPTDecoder fuses exactly {len(LEVEL_STRIDES)} feature maps; got {len(dims)} dims "
                             f"{dims} and {len(strides)} strides {strides}")
        for name, values in (("dims", dims), ("strides", strides)):
            if min(values) < 1:
                raise ValueError(f"{name} must be positive integers, got {values}")
        if hidden < 2 or hidden % 2:
            raise ValueError(f"hidden must be an even integer >= 2, got {hidden}")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        if detail is not None and detail < 1:
            raise ValueError(f"detail is the image's channel count (>= 1) or None, got {detail}")
        self.dims, self.strides, self.detail_channels = dims, strides, detail
        widths = (hidden // 2, hidden, hidden, hidden)
        self.reassemble = nn.ModuleList(Reassemble(d, w, s, t) for d, w, s, t in zip(dims, widths, strides,
                                                                                     LEVEL_STRIDES))
        self.project = nn.ModuleList(nn.Conv2d(w, hidden, 3, padding=1, bias=False) for w in widths)
        finest = hidden if detail is None else hidden // 2
        self.fusion = nn.ModuleList([FeatureFusionBlock(hidden, finest), FeatureFusionBlock(hidden),
                                     FeatureFusionBlock(hidden), FeatureFusionBlock(hidden, coarsest=True)])
        if detail is not None:
            self.detail = DetailBranch(detail)
            half, quarter = self.detail.widths
            self.detail_project = nn.ModuleList([nn.Conv2d(half, finest, 3, padding=1, bias=False),
                                                 nn.Conv2d(quarter, hidden, 3, padding=1, bias=False)])
            self.detail_fusion = FeatureFusionBlock(finest)
        self.head = nn.Sequential(nn.Conv2d(finest, hidden // 2, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Sequential(nn.Conv2d(hidden // 2, 32, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(32, out_channels, 1))

    def forward(self, maps: Sequence[torch.Tensor], size: Sequence[int],
                image: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)`` for an ``(H, W)`` = ``size`` image from its 4 feature maps
        (finest first as in ``strides``); ``image`` ``(B, detail, H, W)`` is required iff built with ``detail``."""
        size = (int(size[0]), int(size[1]))
        self._check(maps, size, image)
        # level sizes, finest first: 1/2 (fusion output), then 1/4 .. 1/32; ceil so odd sizes keep their edge
        sizes = [(math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in (2, *LEVEL_STRIDES)]
        levels = [project(reassemble(x, level_size)) for x, reassemble, project, level_size
                  in zip(maps, self.reassemble, self.project, sizes[1:])]
        if image is not None:
            half, quarter = self.detail(image)
            levels[0] = levels[0] + self.detail_project[1](quarter)
        x = None
        for i in reversed(range(len(levels))):
            x = self.fusion[i](levels[i], x, size=sizes[i])
        if image is not None:
            x = self.detail_fusion(self.detail_project[0](half), x)
        return self.out(_resize(self.head(x), size))

    def _check(self, maps: Sequence[torch.Tensor], size: tuple[int, int], image: torch.Tensor | None) -> None:
        if len(maps) != len(self.dims):
            raise ValueError(f"DPTDecoder expects {len(self.dims)} feature maps (strides {self.strides}), "
                             f"got {len(maps)}")
        height, width = size
        for i, (x, dim, stride) in enumerate(zip(maps, self.dims, self.strides)):
            if x.ndim != 4 or x.shape[1] != dim:
                raise ValueError(f"feature map {i} must be (B, {dim}, h, w), got {tuple(x.shape)}")
            fits = [x.shape[d] in (n // stride, math.ceil(n / stride)) for d, n in ((2, height), (3, width))]
            if not all(fits):
                raise ValueError(f"feature map {i} is {x.shape[2]}x{x.shape[3]}, but stride {stride} on a "
                                 f"{height}x{width} image gives {math.ceil(height / stride)}x"
                                 f"{math.ceil(width / stride)} (or {height // stride}x{width // stride})")
        if self.detail_channels is None:
            if image is not None:
                raise ValueError("this DPTDecoder has no detail branch (detail=None), yet an image was passed")
        elif image is None:
            raise ValueError(f"this DPTDecoder was built with detail={self.detail_channels}: pass "
                             f"image=(B, {self.detail_channels}, {height}, {width})")
        elif image.ndim != 4 or image.shape[1] != self.detail_channels or tuple(image.shape[2:]) != size:
            raise ValueError(f"image must be (B, {self.detail_channels}, {height}, {width}), "
                             f"got {tuple(image.shape)}")
