"""Recipe section ``augment``: DINO multi-crop geometry and the modality preset's parameters.

Crop-scale precedence: an explicit ``global_scale`` / ``local_scale`` in the recipe wins; left null (the
default) the modality preset's suggestion is used (DINO's (0.4, 1) / (0.05, 0.4) unless the preset says why
not, e.g. thermal's larger local crops). :func:`dinomed.augment.multicrop.resolve_scales` applies this rule; the
crops' least ``foreground`` fraction follows the same precedence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dinomed.config import option


@dataclass
class AugmentConfig:
    """Global/local crop counts, sizes and scale ranges (DINO defaults) plus preset overrides."""

    global_crops: int = option(2, "number of global (teacher) crops", min=1)
    global_size: int = option(224, "global crop side in pixels", min=16)
    global_scale: tuple[float, float] | None = option(
        None, "global crop area fraction range; null = the modality preset's default", min=0.0, max=1.0
    )
    local_crops: int = option(8, "number of local (student-only) crops", min=0)
    local_size: int = option(96, "local crop side in pixels", min=16)
    local_scale: tuple[float, float] | None = option(
        None, "local crop area fraction range; null = the modality preset's default", min=0.0, max=1.0
    )
    foreground: float | None = option(
        None, "least foreground (tissue) fraction of every crop, redrawn up to 10 times; null = the modality "
        "preset's default (oct 0.3: keeps crops off the empty vitreous, 0 elsewhere)", min=0.0, max=1.0
    )
    strength: float = option(
        1.0, "scales the probability/magnitude of photometric ops (0 = crops, flips and rotations only)", min=0.0
    )
    params: dict[str, Any] = option({}, "modality preset parameter overrides, e.g. {rotate_limit: 5}")

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale"):
            if getattr(self, name) is None:
                continue
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
