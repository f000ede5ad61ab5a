"""DINOLoss against the reference double loop over (teacher crop, student crop) pairs (facebookresearch/dino)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from dinomed.ssl.dino import DINOLoss

K, B = 64, 5


def reference_loss(teacher_out, student_out, center, teacher_temp, student_temp):
    """Straightforward version of the reference: one cross-entropy per pair of different views."""
    total, terms = 0.0, 0
    for i, t in enumerate(teacher_out):
        q = F.softmax((t - center) / teacher_temp, dim=-1).detach()
        for v, s in enumerate(student_out):
            if v == i:
                continue
            total = total + torch.sum(-q * F.log_softmax(s / student_temp, dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def reference_center(center, teacher_out, momentum):
    batch_center = torch.cat(teacher_out).mean(0, keepdim=True)
    return center * momentum + batch_center * (1 - momentum)


def _outputs(n_global: int, n_crops: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(B, K, generator=gen) * 3 for _ in range(n_global)]
    student = [(torch.randn(B, K, generator=gen) * 3).requires_grad_() for _ in range(n_crops)]
    return teacher, student


@pytest.mark.parametrize("n_global,n_local", [(2, 0), (2, 1), (2, 6), (3, 0), (3, 4), (1, 3)])
def test_loss_gradients_and_center_match_reference(n_global: int, n_local: int) -> None:
    teacher, student = _outputs(n_global, n_global + n_local)
    loss_fn = DINOLoss(out_dim=K, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, K))  # a non-zero centre, as after some steps
    center = loss_fn.center.clone()

    loss = loss_fn(teacher, student, teacher_temp=0.05)
    got = torch.autograd.grad(loss, student)
    expected_loss = reference_loss(teacher, student, center, 0.05, 0.1)
    # with one global crop the student's own view of it is in no pair: the reference leaves it out of the graph
    expected = torch.autograd.grad(expected_loss, student, allow_unused=True, materialize_grads=True)

    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss_fn.center, reference_center(center, teacher, 0.9))


def test_center_accumulates_over_steps_and_is_in_state_dict() -> None:
    loss_fn = DINOLoss(out_dim=K, center_momentum=0.8)
    center = torch.zeros(1, K)
    for seed in range(3):
        teacher, student = _outputs(2, 4, seed)
        loss_fn(teacher, student, teacher_temp=0.04)
        center = reference_center(center, teacher, 0.8)
    torch.testing.assert_close(loss_fn.center, center)
    restored = DINOLoss(out_dim=K)
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored.center, center)


def test_teacher_temperature_warmup_per_epoch_and_explicit_override() -> None:
    warmup, final, epochs = 0.02, 0.07, 4
    expected = np.concatenate([np.linspace(warmup, final, epochs), [final] * 3])  # reference schedule
    teacher, student = _outputs(2, 3)
    for epoch, temp in enumerate(expected):
        loss_fn = DINOLoss(K, warmup_teacher_temp=warmup, teacher_temp=final, warmup_teacher_temp_epochs=epochs)
        want = reference_loss(teacher, student, torch.zeros(1, K), float(temp), 0.1)
        torch.testing.assert_close(loss_fn(teacher, student, epoch=epoch), want)
    loss_fn = DINOLoss(K, warmup_teacher_temp=warmup, teacher_temp=final, warmup_teacher_temp_epochs=epochs)
    want = reference_loss(teacher, student, torch.zeros(1, K), 0.5, 0.1)
    torch.testing.assert_close(loss_fn(teacher, student, epoch=0, teacher_temp=0.5), want)


def test_float16_inputs_give_the_float32_loss() -> None:
    teacher, student = _outputs(2, 4)
    half_t, half_s = [t.half() for t in teacher], [s.detach().half() for s in student]
    loss = DINOLoss(K)(half_t, half_s, teacher_temp=0.04)
    assert loss.dtype == torch.float32
    want = reference_loss([t.float() for t in half_t], [s.float() for s in half_s], torch.zeros(1, K), 0.04, 0.1)
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize(
    "teacher_shapes,student_shapes,match",
    [
        ([(B, K)], [(B, K)], "at least one"),
        ([(B, K)] * 3, [(B, K)] * 2, "every teacher"),
        ([(B, K)] * 2, [(B, K), (B, K), (B + 1, K)], r"student_out\[2\]"),
        ([(B, K + 1)] * 2, [(B, K + 1)] * 2, "out_dim=64"),
    ],
)
def test_bad_inputs_are_named(teacher_shapes, student_shapes, match) -> None:
    teacher = [torch.randn(s) for s in teacher_shapes]
    student = [torch.randn(s) for s in student_shapes]
    with pytest.raises(ValueError, match=match):
        DINOLoss(K)(teacher, student, teacher_temp=0.04)


def test_missing_temperature_is_an_error() -> None:
    with pytest.raises(ValueError, match="teacher_temp"):
        DINOLoss(K)(*_outputs(2, 2))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank: int, port: int, world: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        teacher, student = _outputs(2, 3, seed=rank)
        loss_fn = DINOLoss(K, center_momentum=0.5)
        loss_fn(teacher, student, teacher_temp=0.04)
        results[rank] = loss_fn.center.clone()
    finally:
        dist.destroy_process_group()


def test_center_is_all_reduced_across_processes() -> None:
    world = 2
    results = mp.Manager().dict()
    mp.spawn(_distributed_worker, args=(_free_port(), world, results), nprocs=world, join=True)
    everything = [t for rank in range(world) for t in _outputs(2, 3, seed=rank)[0]]
    expected = reference_center(torch.zeros(1, K), everything, 0.5)
    for rank in range(world):
        torch.testing.assert_close(results[rank], expected)
