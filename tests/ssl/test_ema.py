"""Teacher EMA against a per-parameter loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dinomed.ssl.ema import update_teacher


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.GELU(), nn.Linear(8, 3))
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()(torch.randn(16, 6))  # moves the student's BatchNorm running statistics
    return student, teacher


def test_matches_per_parameter_loop_and_copies_buffers() -> None:
    student, teacher = _pair()
    expected = copy.deepcopy(teacher)
    with torch.no_grad():
        for (_, t), (_, s) in zip(expected.named_parameters(), student.named_parameters()):
            t.mul_(0.9).add_((1 - 0.9) * s)
    update_teacher(student, teacher, 0.9)
    for (name, t), (_, e) in zip(teacher.named_parameters(), expected.named_parameters()):
        torch.testing.assert_close(t, e, msg=name)
        assert not t.requires_grad
    for (name, t), (_, s) in zip(teacher.named_buffers(), student.named_buffers()):
        torch.testing.assert_close(t, s, msg=name)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_momentum_extremes(momentum: float) -> None:
    student, teacher = _pair()
    before = copy.deepcopy(teacher)
    update_teacher(student, teacher, momentum)
    target = before if momentum == 1.0 else student
    for (name, t), (_, e) in zip(teacher.named_parameters(), target.named_parameters()):
        torch.testing.assert_close(t, e, msg=name)


def test_mismatched_networks_and_bad_momentum_are_errors() -> None:
    student, teacher = _pair()
    with pytest.raises(ValueError, match="only in student"):
        update_teacher(student, nn.Sequential(nn.Linear(6, 8)), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        update_teacher(student, teacher, 1.5)
