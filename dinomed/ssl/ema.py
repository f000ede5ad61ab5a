"""Teacher update by exponential moving average of the student (Caron et al. 2021, Sec. 3.1 "Teacher network").

The teacher is never trained by gradients: after every student step its weights follow
``teacher = m * teacher + (1 - m) * student`` with ``m`` rising from ``dino.momentum_teacher`` to 1 (a cosine, see
:mod:`dinomed.ssl.schedules`). The paper shows this "momentum teacher" is a Polyak-Ruppert average that
outperforms the student throughout training, which is why the teacher backbone is the one we export.

Example:
    >>> update_teacher(student, teacher, momentum=0.996)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["update_teacher"]


def _unwrap(module: nn.Module) -> nn.Module:
    """The wrapped model of DistributedDataParallel / DataParallel, so DDP students drop in."""
    return module.module if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else module


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """In place ``teacher = momentum * teacher + (1 - momentum) * student`` over parameters matched by name.

    Buffers (e.g. BatchNorm running statistics in a ``use_bn`` head) are copied from the student.
    One ``torch._foreach_lerp_`` (``t + (1 - m) * (s - t)``, the same average) reads each tensor once, where a
    multiply-then-add pass reads the teacher twice.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_teacher: momentum must be in [0, 1], got {momentum}")
    student, teacher = _unwrap(student), _unwrap(teacher)
    s_params, t_params = dict(student.named_parameters()), dict(teacher.named_parameters())
    if s_params.keys() != t_params.keys():
        only_s = sorted(s_params.keys() - t_params.keys())[:5]
        only_t = sorted(t_params.keys() - s_params.keys())[:5]
        raise ValueError(
            f"update_teacher: student and teacher parameters differ (only in student: {only_s}, only in teacher: "
            f"{only_t}); the teacher must be a copy of the student"
        )
    names = list(t_params)
    teacher_tensors = [t_params[n].data for n in names]
    student_tensors = [s_params[n].data for n in names]
    torch._foreach_lerp_(teacher_tensors, student_tensors, 1.0 - momentum)
    t_buffers = dict(teacher.named_buffers())
    for name, buffer in student.named_buffers():
        if name in t_buffers:
            t_buffers[name].copy_(buffer)
