"""Training losses of the task heads: MONAI Dice + cross-entropy for masks, SiLog + gradient matching for depth.

Depth follows Surgical-DINO / AdaBins: the scale-invariant log loss (Eigen et al. 2014) with ``lambda = 0.85``
and gain 10, plus the multi-scale gradient-matching loss of MiDaS (Ranftl et al. 2020) that sharpens
discontinuities the SiLog term ignores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn


class SiLogLoss(nn.Module):
    """``alpha * sqrt(mean(g^2) - lambda * mean(g)^2)`` with ``g = log(pred) - log(target)`` on valid pixels."""

    def __init__(self, lambd: float = 0.85, alpha: float = 10.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.lambd, self.alpha, self.eps = lambd, alpha, eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        g = torch.log(pred[valid].clamp_min(self.eps)) - torch.log(target[valid].clamp_min(self.eps))
        if g.numel() == 0:
            return pred.sum() * 0.0
        variance = (g ** 2).mean() - self.lambd * g.mean() ** 2
        return self.alpha * torch.sqrt(variance.clamp_min(self.eps))


class GradientMatchingLoss(nn.Module):
    """MiDaS gradient matching on the log-depth residual over ``scales`` halvings of the image.

    At each scale: ``sum(|dx R| + |dy R|)`` over pixel pairs both valid, divided by the valid pixel count.
    """

    def __init__(self, scales: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        self.scales, self.eps = scales, eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        residual = torch.log(pred.clamp_min(self.eps)) - torch.log(target.clamp_min(self.eps))
        residual, mask = residual * valid, valid.float()
        total = pred.sum() * 0.0
        for scale in range(self.scales):
            step = 2 ** scale
            r, m = residual[..., ::step, ::step], mask[..., ::step, ::step]
            mx = m[..., :, 1:] * m[..., :, :-1]
            my = m[..., 1:, :] * m[..., :-1, :]
            gx = ((r[..., :, 1:] - r[..., :, :-1]).abs() * mx).sum()
            gy = ((r[..., 1:, :] - r[..., :-1, :]).abs() * my).sum()
            total = total + (gx + gy) / m.sum().clamp_min(1.0)
        return total


class DepthLoss(nn.Module):
    """SiLog + ``gradient_weight`` x gradient matching; pixels outside ``(min_depth, max_depth]`` are ignored."""

    def __init__(self, min_depth: float, max_depth: float, gradient_weight: float = 0.5) -> None:
        super().__init__()
        self.min_depth, self.max_depth, self.gradient_weight = min_depth, max_depth, gradient_weight
        self.silog, self.gradient = SiLogLoss(), GradientMatchingLoss()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        valid = (target > self.min_depth) & (target <= self.max_depth)
        return self.silog(pred, target, valid) + self.gradient_weight * self.gradient(pred, target, valid)


class SegmentationLoss(nn.Module):
    """MONAI ``DiceCELoss`` on logits (B, K, H, W) against class-index masks (B, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.float(), mask[:, None].long())


class ClassificationLoss(nn.Module):
    """Cross-entropy on logits (B, K) against integer labels (B,)."""

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), label.long())
