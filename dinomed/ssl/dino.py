"""DINO self-distillation loss with output centring (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", Alg. 1).

The student's softmax over ``K`` prototypes is trained to match the teacher's centred and sharpened softmax for every
(teacher global crop, student crop) pair of *different* views. Centring (subtracting an EMA of the teacher logits)
prevents one dimension from dominating; sharpening (a low teacher temperature) prevents the uniform solution.

Example:
    >>> loss_fn = DINOLoss(out_dim=4096)
    >>> loss = loss_fn(teacher_out=[t1, t2], student_out=[s1, s2, l1, l2], epoch=0)  # each (B, 4096)
    >>> loss.backward()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dinomed.ssl.schedules import teacher_temperature

__all__ = ["DINOLoss", "multicrop_cross_entropy"]


def multicrop_cross_entropy(
    teacher_probs: torch.Tensor, student_out: Sequence[torch.Tensor], student_temp: float
) -> torch.Tensor:
    """Mean over pairs ``(i, v), v != i`` and over the batch of ``-sum_k p_i[k] * log softmax(s_v / T_s)[k]``.

    ``teacher_probs`` is ``(G, B, K)`` (global crops); ``student_out`` holds ``V >= G`` logits ``(B, K)``, the same
    ``G`` global crops first. The teacher side does not depend on ``v``: ``sum_{i != v} p_i = P - p_v`` with
    ``P = sum_i p_i``, so each student crop needs one product with ``P`` (minus its own view's ``p_v``) instead of one
    per pair. Looping over the ``V`` crops (never over pairs) beats stacking them: no ``(V, B, K)`` copy is made.
    """
    n_global, batch = teacher_probs.shape[0], teacher_probs.shape[1]
    n_pairs = n_global * (len(student_out) - 1)
    if n_pairs < 1:
        raise ValueError(
            f"DINO loss needs at least one (teacher, student) pair of different views; got {n_global} teacher "
            f"crop(s) and {len(student_out)} student crop(s)"
        )
    all_teachers = teacher_probs.sum(0)
    total = teacher_probs.new_zeros(())
    for v, logits in enumerate(student_out):
        weights = all_teachers - teacher_probs[v] if v < n_global else all_teachers
        total = total + torch.sum(weights * F.log_softmax(logits.float() / student_temp, dim=-1))
    return -total / (n_pairs * batch)


def _check_outputs(teacher_out: Sequence[torch.Tensor], student_out: Sequence[torch.Tensor], out_dim: int) -> None:
    if not teacher_out or not student_out:
        raise ValueError(
            f"DINOLoss: expected non-empty lists of per-crop logits, got {len(teacher_out)} teacher and "
            f"{len(student_out)} student crop(s)"
        )
    if len(student_out) < len(teacher_out):
        raise ValueError(
            f"DINOLoss: the student must see every teacher (global) crop first; got {len(teacher_out)} teacher "
            f"and only {len(student_out)} student crop(s)"
        )
    shape = tuple(teacher_out[0].shape)
    for name, crops in (("teacher_out", teacher_out), ("student_out", student_out)):
        for i, crop in enumerate(crops):
            if tuple(crop.shape) != shape or crop.shape[-1] != out_dim:
                raise ValueError(
                    f"DINOLoss: {name}[{i}] has shape {tuple(crop.shape)}; expected (batch, out_dim={out_dim}) "
                    f"like teacher_out[0] {shape}"
                )


class DINOLoss(nn.Module):
    """Cross-entropy between centred/sharpened teacher and student softmaxes over multi-crop views.

    Args:
        out_dim: Number of prototypes ``K`` (the head's output dimension).
        warmup_teacher_temp: Teacher temperature at epoch 0.
        teacher_temp: Teacher temperature after the warm-up.
        warmup_teacher_temp_epochs: Epochs of linear teacher-temperature warm-up.
        student_temp: Student temperature.
        center_momentum: EMA momentum of the centre (the teacher's running mean logit).

    The centre is a buffer, so it is saved in ``state_dict`` and restored on resume.
    """

    center: torch.Tensor

    def __init__(
        self,
        out_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"DINOLoss: out_dim must be >= 1, got {out_dim}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"DINOLoss: center_momentum must be in [0, 1], got {center_momentum}")
        self.out_dim = out_dim
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def _temperature(self, epoch: int | None, teacher_temp: float | None) -> float:
        if teacher_temp is not None:
            return float(teacher_temp)
        if epoch is None:
            raise ValueError("DINOLoss: pass either teacher_temp (per-step schedule) or epoch (built-in warm-up)")
        return teacher_temperature(epoch, self.warmup_teacher_temp, self.teacher_temp, self.warmup_teacher_temp_epochs)

    def forward(
        self,
        teacher_out: list[torch.Tensor],
        student_out: list[torch.Tensor],
        epoch: int | None = None,
        teacher_temp: float | None = None,
    ) -> torch.Tensor:
        """Loss over all pairs of different views, then an EMA update of the centre.

        Args:
            teacher_out: Per-global-crop teacher logits, each ``(B, K)``.
            student_out: Per-crop student logits, each ``(B, K)``, global crops first in the teacher's order.
            epoch: Selects the teacher temperature from the warm-up when ``teacher_temp`` is not given.
            teacher_temp: Explicit teacher temperature (wins over ``epoch``).
        """
        _check_outputs(teacher_out, student_out, self.out_dim)
        temp = self._temperature(epoch, teacher_temp)
        # float32 even under fp16 autocast: exp/log over K = 65536 entries overflow or lose mass in half precision
        teacher = torch.stack(teacher_out).detach().float()
        teacher_probs = F.softmax((teacher - self.center) / temp, dim=-1)
        loss = multicrop_cross_entropy(teacher_probs, student_out, self.student_temp)
        self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """EMA of the mean teacher logit over the global batch (all-reduced across processes under DDP)."""
        logits = teacher.reshape(-1, self.out_dim).float()
        batch_sum = logits.sum(0, keepdim=True)
        count = logits.shape[0]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            count *= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1.0 - self.center_momentum)
