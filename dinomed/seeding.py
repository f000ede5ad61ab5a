"""Seeds and random state: per-item seeds that survive a resume, and the RNG state a checkpoint carries.

Augmentation and data order depend only on ``(run seed, epoch, item)``, never on how many workers ran or
where a run was interrupted, so a resumed run draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["item_seed", "rng_state", "set_rng_state"]


def item_seed(seed: int, epoch: int, index: int = 0) -> int:
    """A 32-bit seed that is a pure function of ``(seed, epoch, index)`` (NumPy's ``SeedSequence`` hash)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def rng_state() -> dict[str, Any]:
    """Python and torch (CPU + CUDA) random states, so a resumed run draws the same numbers."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
