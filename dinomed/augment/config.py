"""Recipe section ``augment``: DINO multi-crop geometry and the modality preset's parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dinomed.config import option


@dataclass
class AugmentConfig:
    """Global/local crop counts, sizes and scale ranges (DINO defaults) plus preset overrides."""

    global_crops: int = option(2, "number of global (teacher) crops", min=1)
    global_size: int = option(224, "global crop side in pixels", min=16)
    global_scale: tuple[float, float] = option((0.4, 1.0), "global crop area fraction range", min=0.0, max=1.0)
    local_crops: int = option(8, "number of local (student-only) crops", min=0)
    local_size: int = option(96, "local crop side in pixels", min=16)
    local_scale: tuple[float, float] = option((0.05, 0.4), "local crop area fraction range", min=0.0, max=1.0)
    strength: float = option(1.0, "scales the probability/magnitude of photometric ops (0 = crops only)", min=0.0)
    params: dict[str, Any] = option({}, "preset parameter overrides, e.g. {rotate_limit: 5}")

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
