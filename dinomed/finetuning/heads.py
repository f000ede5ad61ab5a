"""Task heads of fine-tuning, registered by task name; each declares its target, loss, metrics and the primary
metric that early stopping and tuning follow.

A head reads ``features`` (one ``(patches, cls)`` pair per selected backbone block, see
:func:`~dinomed.models.decoders.backbone_features`) and the input images, and returns full-resolution outputs. The
dense heads decode with ``decoder="fusion"`` (concat + one upsample) or ``"dpt"`` (DPT's pyramid), the latter with
an optional ``detail`` branch on the pixels.
A new task is a subclass registered with :func:`register_head`; ``finetune.task: <name>`` then selects it::

    @register_head("edges")
    class EdgeHead(TaskHead):
        target, primary_metric = "mask", "dice"
        ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinomed.finetuning.config import DECODERS
from dinomed.models.backbones import FeatureLevels
from dinomed.models.decoders import DPTDecoder, Features, FusionDecoder, evenly_spaced_blocks, stack_maps
from dinomed.registry import TASK_HEADS

if TYPE_CHECKING:
    from dinomed.data.records import ImageDataset
    from dinomed.finetuning.config import FinetuneConfig

__all__ = ["TaskHead", "DenseDecoder", "DECODERS", "Metrics", "register_head", "build_head", "head_class",
           "SegmentationHead", "DepthHead", "ClassificationHead"]


class Metrics(Protocol):
    """An accumulator of a task's evaluation metrics: ``update`` per batch, then ``compute`` (MONAI's pattern)."""

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


def register_head(name: str) -> Callable[[type["TaskHead"]], type["TaskHead"]]:
    """Class decorator adding a task head under ``name`` (the recipe's ``finetune.task``)."""
    return TASK_HEADS.register(name)


def head_class(task: str) -> type["TaskHead"]:
    """The head registered for ``task``; an unknown task fails listing the registered ones."""
    return TASK_HEADS.get(task)


class TaskHead(nn.Module):
    """Base of the task heads.

    Class attributes: ``target`` (the sample key it learns: ``label``, ``mask`` or ``depth``), ``primary_metric``
    and ``higher_is_better`` (what model selection follows). Class methods build the head's options, loss and
    metrics from the ``finetune`` section, so nothing else in dinomed switches on the task name.
    """

    task: ClassVar[str] = ""
    target: ClassVar[str] = ""
    primary_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True

    def __init__(self, levels: FeatureLevels, blocks: list[int]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a task head needs at least one backbone block")
        self.blocks = list(blocks)
        self.dims = [levels.dims[b] for b in self.blocks]  # channels of each map the head reads
        self.strides = [levels.strides[b] for b in self.blocks]  # and its stride on the input image

    def forward(self, features: Features, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def infer_classes(cls, dataset: ImageDataset, indices: Sequence[int]) -> int | None:
        """Number of classes the data implies (``None`` for tasks without classes)."""
        return None

    @classmethod
    def options(cls, cfg: FinetuneConfig, num_classes: int | None, channels: int) -> dict[str, Any]:
        """Constructor keyword arguments from the ``finetune`` section and the images' ``channels`` (saved with
        the model)."""
        return {}

    @classmethod
    def loss(cls, cfg: FinetuneConfig) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def metrics(cls, cfg: FinetuneConfig, num_classes: int | None) -> Metrics:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def is_better(cls, value: float, best: float | None) -> bool:
        """Whether ``value`` of the primary metric improves on ``best`` (NaN never does)."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if cls.higher_is_better else value < best


@register_head("seg")
class SegmentationHead(TaskHead):
    """Semantic segmentation: fused multi-block patch features upsampled to full resolution.

    ``num_classes`` counts background, so a binary polyp mask uses 2. Returns logits (B, K, H, W); trained with
    MONAI's Dice + cross-entropy, selected on Dice.

    Example:
        >>> head = SegmentationHead(feature_levels(vit), blocks=[2, 5, 8, 11], num_classes=2)
        >>> logits = head(backbone_features(vit, x, head.blocks), x.shape[-2:])
    """

    target, primary_metric = "mask", "dice"

    def __init__(self, levels: FeatureLevels, blocks: list[int], *, num_classes: int = 2, hidden: int = 128,
                 decoder: str = "fusion", detail: int | None = None) -> None:
        super().__init__(levels, blocks)
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.decoder = DenseDecoder(self.dims, self.strides, hidden, num_classes, decoder, detail)

    def forward(self, features: Features, images: torch.Tensor) -> torch.Tensor:
        return self.decoder([patches for patches, _ in features], images)

    @classmethod
    def infer_classes(cls, dataset: ImageDataset, indices: Sequence[int]) -> int:
        """Background plus the largest class index seen in the first labelled masks."""
        seen = max(int(np.max(dataset[i]["mask"])) for i in list(indices)[:16])
        return max(2, seen + 1)

    @classmethod
    def options(cls, cfg: FinetuneConfig, num_classes: int | None, channels: int) -> dict[str, Any]:
        return {"num_classes": num_classes or 2, **dense_options(cfg, channels)}

    @classmethod
    def loss(cls, cfg: FinetuneConfig) -> nn.Module:
        from dinomed.finetuning.losses import SegmentationLoss

        return SegmentationLoss()

    @classmethod
    def metrics(cls, cfg: FinetuneConfig, num_classes: int | None) -> Metrics:
        from dinomed.finetuning.metrics import SegmentationMetrics

        return SegmentationMetrics(num_classes or 2)


@register_head("depth")
class DepthHead(TaskHead):
    """Monocular depth as classification over depth bins (AdaBins / DINOv2 / Surgical-DINO).

    Each block contributes its patch map with the CLS token concatenated to every patch; logits over ``bins``
    linearly spaced depth bins are soft-maxed and the depth is the probability-weighted bin centre, which gives
    a continuous depth and a stable training signal. Returns depth (B, 1, H, W) in ``[min_depth, max_depth]``;
    trained with SiLog + gradient matching, selected on AbsRel (lower is better).
    """

    target, primary_metric, higher_is_better = "depth", "abs_rel", False

    def __init__(self, levels: FeatureLevels, blocks: list[int], *, bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, hidden: int = 128, decoder: str = "fusion", detail: int | None = None) -> None:
        super().__init__(levels, blocks)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.register_buffer("centers", torch.linspace(min_depth, max_depth, bins), persistent=False)
        self.decoder = DenseDecoder([2 * d for d in self.dims], self.strides, hidden, bins, decoder, detail)

    def forward(self, features: Features, images: torch.Tensor) -> torch.Tensor:
        maps = [torch.cat([p, cls[:, :, None, None].expand_as(p)], dim=1) for p, cls in features]
        probs = self.decoder(maps, images).float().softmax(dim=1)
        return torch.einsum("bkhw,k->bhw", probs, self.centers)[:, None]

    @classmethod
    def options(cls, cfg: FinetuneConfig, num_classes: int | None, channels: int) -> dict[str, Any]:
        return {"bins": cfg.depth_bins, "min_depth": cfg.min_depth, "max_depth": cfg.max_depth,
                **dense_options(cfg, channels)}

    @classmethod
    def loss(cls, cfg: FinetuneConfig) -> nn.Module:
        from dinomed.finetuning.losses import DepthLoss

        return DepthLoss(cfg.min_depth, cfg.max_depth, cfg.gradient_weight)

    @classmethod
    def metrics(cls, cfg: FinetuneConfig, num_classes: int | None) -> Metrics:
        from dinomed.finetuning.metrics import DepthMetrics

        return DepthMetrics(cfg.min_depth, cfg.max_depth)


@register_head("cls")
class ClassificationHead(TaskHead):
    """Image classification: linear layer on the CLS token concatenated with the mean patch token (DINO
    linear evaluation). Returns logits (B, K); trained with cross-entropy, selected on balanced accuracy."""

    target, primary_metric = "label", "balanced_accuracy"

    def __init__(self, levels: FeatureLevels, blocks: list[int], *, num_classes: int = 2) -> None:
        super().__init__(levels, blocks[-1:])
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.linear = nn.Linear(2 * self.dims[-1], num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Features, images: torch.Tensor) -> torch.Tensor:
        patches, cls = features[-1]
        return self.linear(torch.cat([cls, patches.mean(dim=(2, 3))], dim=1))

    @classmethod
    def infer_classes(cls, dataset: ImageDataset, indices: Sequence[int]) -> int:
        return len(dataset.class_names or []) or int(max(dataset.labels())) + 1

    @classmethod
    def options(cls, cfg: FinetuneConfig, num_classes: int | None, channels: int) -> dict[str, Any]:
        return {"num_classes": num_classes or 2}

    @classmethod
    def loss(cls, cfg: FinetuneConfig) -> nn.Module:
        from dinomed.finetuning.losses import ClassificationLoss

        return ClassificationLoss()

    @classmethod
    def metrics(cls, cfg: FinetuneConfig, num_classes: int | None) -> Metrics:
        from dinomed.finetuning.metrics import ClassificationMetrics

        return ClassificationMetrics(num_classes or 2)


def dense_options(cfg: FinetuneConfig, channels: int) -> dict[str, Any]:
    """The decoder settings of the dense heads (``finetune.decoder``, ``detail``, ``head_hidden``)."""
    return {"hidden": cfg.head_hidden, "decoder": cfg.decoder, "detail": channels if cfg.detail else None}


class DenseDecoder(nn.Module):
    """The decoder of a dense head: maps of the selected levels + the images -> logits at the images' (H, W).

    ``fusion``: the maps stacked at the finest one, :class:`~dinomed.models.decoders.FusionDecoder`, resized;
    ``dpt``: :class:`~dinomed.models.decoders.DPTDecoder` (4 levels), with a detail branch on the ``detail``-
    channel images when given (DPT only: it joins DPT's finest fusion steps).
    """

    def __init__(self, dims: list[int], strides: list[int], hidden: int, out: int, kind: str,
                 detail: int | None) -> None:
        super().__init__()
        if kind not in DECODERS:
            raise ValueError(f"unknown decoder '{kind}'; valid decoders are {list(DECODERS)}")
        if kind == "fusion" and detail is not None:
            raise ValueError("the detail branch joins DPT's fusion steps: set finetune.decoder=dpt with finetune.detail")
        if kind == "dpt" and len(dims) != 4:
            raise ValueError(f"decoder dpt fuses 4 levels (1/4 .. 1/32 of the image), but the head reads {len(dims)} "
                             "block(s): give finetune.blocks 4 entries, or leave it unset (4 evenly spaced)")
        self.kind = kind
        self.net = (FusionDecoder(sum(dims), hidden, out) if kind == "fusion"
                    else DPTDecoder(dims, strides, hidden=hidden, out_channels=out, detail=detail))

    def forward(self, maps: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        if self.kind == "dpt":
            return self.net(maps, size, image=images if self.net.detail_channels else None)
        return F.interpolate(self.net(stack_maps(maps)), size=size, mode="bilinear", align_corners=False)


def build_head(task: str, levels: FeatureLevels, *, blocks: list[int] | None = None, **kwargs: Any) -> TaskHead:
    """The one construction path of task heads, on a backbone's :func:`~dinomed.models.backbones.feature_levels`;
    ``blocks`` (ViT blocks, NAT stages) defaults to 4 evenly spaced ones (the last for ``cls``)."""
    cls, depth = head_class(task), levels.count
    blocks = list(blocks) if blocks else evenly_spaced_blocks(depth)
    bad = [b for b in blocks if not -depth <= b < depth]
    if bad:
        raise ValueError(f"head blocks {bad} out of range for a backbone with {depth} blocks (0..{depth - 1})")
    return cls(levels, [b % depth for b in blocks], **kwargs)
