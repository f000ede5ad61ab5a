"""One optimisation step at a run's precision, and the one error a non-finite loss raises.

The step is what both loops share: the non-finite check (agreed by every process, so all stop together),
backward (scaled in fp16), unscaling before any gradient surgery, clipping, the optimizer step and the scaler
update. What differs per loop (DINO's per-parameter clipping and frozen last layer) comes in as callables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dinomed.engine.device import Precision
from dinomed.engine.process import ProcessContext

__all__ = ["TrainingDiverged", "Optimization"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the run stops and its last good checkpoint is kept untouched.

    ``checkpoint`` names that checkpoint (``None`` when none was written yet); ``hint`` says what to change.
    """

    def __init__(self, what: str, *, checkpoint: Path | None = None, hint: str = "") -> None:
        self.what, self.checkpoint, self.hint = what, checkpoint, hint
        kept = (f"last good checkpoint kept at {checkpoint}" if checkpoint is not None and checkpoint.exists()
                else "no checkpoint had been written yet")
        super().__init__(f"training diverged: {what}; {kept}." + (f" {hint}" if hint else ""))

    def at(self, checkpoint: Path, hint: str) -> "TrainingDiverged":
        """The same failure, naming the run's checkpoint and what to try."""
        return TrainingDiverged(self.what, checkpoint=checkpoint, hint=hint)


class Optimization:
    """An optimizer with the gradient scaler of the run's precision.

    Example:
        >>> opt = Optimization(torch.optim.AdamW(model.parameters()), precision, process)
        >>> opt.step(loss, where="step 12", clip=lambda: clip_gradients(model, 3.0))
    """

    def __init__(self, optimizer: torch.optim.Optimizer, precision: Precision, process: ProcessContext) -> None:
        self.optimizer, self.process = optimizer, process
        self.device = precision.device
        self.scaler = precision.grad_scaler()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step(self, loss: torch.Tensor, *, where: str, clip: Callable[[], object] | None = None,
             before_step: Callable[[], object] | None = None) -> None:
        """Backward ``loss`` and update; raises :class:`TrainingDiverged` (in every process) on a NaN/inf loss.

        ``clip`` and ``before_step`` run on unscaled gradients, before the optimizer step.
        """
        if not self.process.all_true(bool(torch.isfinite(loss.detach()).all()), self.device):
            raise TrainingDiverged(f"loss is {loss.item()} at {where}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        for surgery in (clip, before_step):
            if surgery is not None:
                surgery()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
