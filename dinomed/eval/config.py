"""Recipe section ``eval``: frozen-feature evaluation (kNN, linear probe) and attention-map settings."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option


@dataclass
class EvalConfig:
    """Defaults follow DINO's eval_knn.py / eval_linear.py (Caron et al., 2021), scaled down for small medical sets."""

    knn_k: int = option(20, "neighbours of the weighted kNN (DINO: 20); clipped to the training-set size", min=1)
    knn_temperature: float = option(0.07, "temperature T of the vote weights exp(sim / T) (DINO: 0.07)", min=1e-4)
    linear_lrs: list[float] = option(
        [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "linear-probe learning rates swept; the best on the validation split wins", min=0.0
    )
    linear_epochs: int = option(100, "linear-probe epochs over the cached features", min=1)
    linear_batch_size: int = option(256, "linear-probe mini-batch size", min=1)
    linear_weight_decay: float = option(0.0, "linear-probe weight decay (DINO: 0)", min=0.0)
    avgpool_patches: bool = option(
        False, "linear probe on [CLS, mean of patch tokens] (DINO's --avgpool_patchtokens) instead of CLS alone"
    )
    batch_size: int = option(64, "images per forward pass when extracting features", min=1)
    cache_dir: str | None = option(
        None, "feature cache folder; default $DINOMED_CACHE_DIR or ~/.cache/dinomed/features"
    )
    attention_keep: float = option(
        0.6, "attention mass kept by the binary masks (DINO paper: 60 %)", min=0.0, max=1.0
    )

    def __post_init__(self) -> None:
        if not self.linear_lrs:
            raise ValueError("linear_lrs must list at least one learning rate")
