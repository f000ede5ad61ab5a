"""Per-step hyper-parameter schedules of DINO pretraining (lr, weight decay, teacher momentum, teacher temperature).

The shapes follow facebookresearch/dino's ``main_dino.py``: linear lr warm-up then cosine decay, cosine weight-decay
rise, cosine teacher-momentum rise to 1, and a per-epoch linear teacher-temperature warm-up (Caron et al. 2021,
Sec. 3.1 and App. "implementation details"). Every array is a pure function of the config, so a resumed run reads
exactly the value an uninterrupted run would have used at step ``k``.

Example:
    >>> s = build_schedules(DINOConfig(), OptimConfig(), epochs=100, steps_per_epoch=50, batch_size=64)
    >>> s.lr[0], s.lr[-1]  # 0.0 (warm-up start), optim.min_lr
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinomed.ssl.config import DINOConfig, OptimConfig

__all__ = ["cosine_schedule", "teacher_temperature", "Schedules", "build_schedules"]


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Linear warm-up ``warmup_start -> base`` then a half cosine ``base -> final``, one value per step.

    Boundary values (``W = warmup_steps``, ``N = total_steps``):
        * step 0 is ``warmup_start`` when ``W > 0``, else ``base``;
        * warm-up step ``i < W`` is ``warmup_start + (base - warmup_start) * i / W`` (the last one just below base);
        * step ``W`` (first cosine step) is ``base``;
        * step ``N - 1`` (last step) is exactly ``final``; with a single cosine step it is ``final``.

    Unlike the reference ``cosine_scheduler`` (whose last value stops short of ``final``), the last step reaches
    ``final`` exactly, so e.g. the teacher momentum really ends at 1.
    """
    if total_steps < 1:
        raise ValueError(f"cosine_schedule: total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"cosine_schedule: warmup_steps must be in [0, total_steps) = [0, {total_steps}) so that at least one "
            f"step follows the warm-up, got {warmup_steps}"
        )
    warmup = warmup_start + (base - warmup_start) * np.arange(warmup_steps) / max(warmup_steps, 1)
    cosine_steps = total_steps - warmup_steps
    progress = np.arange(cosine_steps) / (cosine_steps - 1) if cosine_steps > 1 else np.ones(1)
    cosine = base + (final - base) * 0.5 * (1.0 - np.cos(np.pi * progress))  # exactly base at progress 0
    cosine[-1] = final  # base + (final - base) is final only up to rounding
    return np.concatenate([warmup, cosine]).astype(np.float64)


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """Teacher temperature at ``epoch``: ``np.linspace(warmup_temp, temp, warmup_epochs)[epoch]``, then ``temp``.

    As the reference, the value changes per epoch, not per step, and ``temp`` is reached at epoch
    ``warmup_epochs - 1`` (a one-epoch warm-up spends epoch 0 at ``warmup_temp``). A low starting temperature
    keeps the early teacher from sharpening onto a few dimensions (paper App. D: it avoids early collapse).
    """
    if epoch < 0:
        raise ValueError(f"teacher_temperature: epoch must be >= 0, got {epoch}")
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return float(warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1))


@dataclass
class Schedules:
    """Per-step values (float64 arrays of length ``epochs * steps_per_epoch``) the trainer reads at step ``k``."""

    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    def __len__(self) -> int:
        return len(self.lr)


def build_schedules(
    dino: DINOConfig, optim: OptimConfig, epochs: int, steps_per_epoch: int, batch_size: int
) -> Schedules:
    """All four schedules of a run; ``batch_size`` is the total over processes (linear scaling rule, lr x B/256)."""
    if epochs < 1 or steps_per_epoch < 1 or batch_size < 1:
        raise ValueError(
            f"build_schedules: epochs ({epochs}), steps_per_epoch ({steps_per_epoch}) and batch_size "
            f"({batch_size}) must all be >= 1"
        )
    total = epochs * steps_per_epoch
    warmup = int(round(optim.warmup_epochs * steps_per_epoch))
    if warmup >= total:
        raise ValueError(
            f"optim.warmup_epochs={optim.warmup_epochs} ({warmup} steps) covers the whole run of {epochs} epoch(s) "
            f"x {steps_per_epoch} steps; set optim.warmup_epochs below train.epochs"
        )
    peak_lr = optim.lr * batch_size / 256.0
    epoch_of_step = np.arange(total) // steps_per_epoch
    temps = [
        teacher_temperature(e, dino.warmup_teacher_temp, dino.teacher_temp, dino.warmup_teacher_temp_epochs)
        for e in range(epochs)
    ]
    return Schedules(
        lr=cosine_schedule(peak_lr, optim.min_lr, total, warmup_steps=warmup),
        wd=cosine_schedule(optim.weight_decay, optim.weight_decay_end, total),
        momentum=cosine_schedule(dino.momentum_teacher, 1.0, total),
        teacher_temp=np.asarray(temps, dtype=np.float64)[epoch_of_step],
    )
