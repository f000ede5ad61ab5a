"""KoLeo regulariser (Sablayrolles et al. 2019; used by DINOv2): spread a batch's features out uniformly.

``-mean_i log(min_{j != i} ||x_i - x_j||)`` on L2-normalised features grows without bound as two features
meet, so it directly opposes representation collapse. DINOv2 adds it with weight 0.1 on the student CLS tokens of
the global crops; on small, homogeneous medical datasets (all OCT B-scans look alike) this keeps short DINO runs
from drifting into the uniform collapse the centring otherwise invites.

Example:
    >>> loss = KoLeoLoss()(torch.randn(16, 192))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko entropy estimator as a loss over one batch of embeddings ``(B, D)``, ``B >= 2``."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"KoLeoLoss needs a (batch >= 2, dim) tensor, got shape {tuple(features.shape)}")
        x = F.normalize(features.float(), dim=-1, eps=self.eps)
        similarity = x @ x.T
        similarity.fill_diagonal_(-2.0)  # never pick the sample itself as its nearest neighbour
        nearest = similarity.argmax(dim=1)
        distances = (x - x[nearest]).norm(dim=-1)
        return -torch.log(distances + self.eps).mean()
