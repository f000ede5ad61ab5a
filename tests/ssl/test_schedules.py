"""Boundary steps of every schedule, the teacher-temperature switch epoch, and purity for resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinomed.ssl.config import DINOConfig, OptimConfig
from dinomed.ssl.schedules import build_schedules, cosine_schedule, teacher_temperature


def straightforward_cosine(base, final, total, warmup, start):
    values = []
    for step in range(total):
        if step < warmup:
            values.append(start + (base - start) * step / warmup)
        else:
            n = total - warmup
            progress = (step - warmup) / (n - 1) if n > 1 else 1.0
            values.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress)))
    return np.array(values)


@pytest.mark.parametrize("total,warmup,start", [(10, 0, 0.0), (10, 3, 0.0), (7, 6, 0.2), (1, 0, 0.0), (100, 25, 0.1)])
def test_cosine_schedule_values_and_boundaries(total: int, warmup: int, start: float) -> None:
    base, final = 2.0, 0.5
    values = cosine_schedule(base, final, total, warmup_steps=warmup, warmup_start=start)
    assert values.shape == (total,)
    np.testing.assert_allclose(values, straightforward_cosine(base, final, total, warmup, start), atol=1e-12)
    assert values[-1] == final
    if warmup:
        assert values[0] == start
        assert values[warmup - 1] == pytest.approx(start + (base - start) * (warmup - 1) / warmup)
    if total - warmup > 1:
        assert values[warmup] == base


@pytest.mark.parametrize("total,warmup", [(0, 0), (5, 5), (5, 6), (5, -1)])
def test_cosine_schedule_rejects_bad_lengths(total: int, warmup: int) -> None:
    with pytest.raises(ValueError, match="cosine_schedule"):
        cosine_schedule(1.0, 0.0, total, warmup_steps=warmup)


def test_teacher_temperature_follows_reference_linspace() -> None:
    expected = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(70, 0.07)])
    got = [teacher_temperature(e, 0.04, 0.07, 30) for e in range(100)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert teacher_temperature(0, 0.04, 0.07, 1) == 0.04 and teacher_temperature(1, 0.04, 0.07, 1) == 0.07
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07


def test_build_schedules_boundaries() -> None:
    dino = DINOConfig(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3, momentum_teacher=0.99)
    optim = OptimConfig(lr=5e-4, min_lr=1e-6, warmup_epochs=2, weight_decay=0.04, weight_decay_end=0.4)
    epochs, per_epoch, batch = 6, 4, 64
    s = build_schedules(dino, optim, epochs, per_epoch, batch)
    total, warmup, peak = epochs * per_epoch, 2 * per_epoch, 5e-4 * 64 / 256
    for values in (s.lr, s.wd, s.momentum, s.teacher_temp):
        assert values.shape == (total,)
    assert len(s) == total
    # lr: linear warm-up from 0, peak (linearly scaled) at the first cosine step, min_lr at the last
    assert s.lr[0] == 0.0
    assert s.lr[warmup - 1] == pytest.approx(peak * (warmup - 1) / warmup)
    assert s.lr[warmup] == pytest.approx(peak)
    assert s.lr[-1] == 1e-6
    assert np.all(np.diff(s.lr[:warmup + 1]) > 0) and np.all(np.diff(s.lr[warmup:]) < 0)
    # weight decay and momentum: cosine from step 0 with no warm-up, last step exact
    assert (s.wd[0], s.wd[-1]) == (0.04, 0.4) and np.all(np.diff(s.wd) > 0)
    assert (s.momentum[0], s.momentum[-1]) == (0.99, 1.0) and np.all(np.diff(s.momentum) > 0)
    # teacher temperature: constant within an epoch, final value from epoch warmup_teacher_temp_epochs - 1 on
    per_epoch_temps = s.teacher_temp.reshape(epochs, per_epoch)
    assert np.all(per_epoch_temps == per_epoch_temps[:, :1])
    np.testing.assert_allclose(per_epoch_temps[:, 0], [0.04, 0.055, 0.07, 0.07, 0.07, 0.07])
    assert s.teacher_temp[3 * per_epoch - 1] == pytest.approx(0.07) and s.teacher_temp[per_epoch - 1] == 0.04


def test_teacher_temperature_switches_at_the_warmup_end() -> None:
    dino = DINOConfig(warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_epochs=1)
    s = build_schedules(dino, OptimConfig(warmup_epochs=0), epochs=3, steps_per_epoch=5, batch_size=256)
    assert np.all(s.teacher_temp[:5] == 0.02) and np.all(s.teacher_temp[5:] == 0.06)


def test_fractional_warmup_rounds_to_steps() -> None:
    s = build_schedules(DINOConfig(warmup_teacher_temp_epochs=0), OptimConfig(lr=1e-3, warmup_epochs=0.5), epochs=2,
                        steps_per_epoch=5,
                        batch_size=256)
    warmup = round(0.5 * 5)
    assert s.lr[warmup] == pytest.approx(1e-3) and s.lr[warmup - 1] < 1e-3


def test_schedules_are_pure_functions_of_the_config() -> None:
    args = (DINOConfig(warmup_teacher_temp_epochs=2), OptimConfig(warmup_epochs=1), 5, 7, 32)
    first, second = build_schedules(*args), build_schedules(*args)
    for name in ("lr", "wd", "momentum", "teacher_temp"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_warmup_covering_the_run_names_the_keys() -> None:
    with pytest.raises(ValueError, match=r"optim\.warmup_epochs.*train\.epochs"):
        build_schedules(DINOConfig(), OptimConfig(warmup_epochs=3), epochs=3, steps_per_epoch=4, batch_size=8)
