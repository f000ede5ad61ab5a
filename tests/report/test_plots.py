"""Collapse and training plots render from metrics records, with the verdict from the monitor."""

from __future__ import annotations

import math

import pytest

from dinomed.report.plots import collapse_figure, to_png, training_figure, verdict_line


def _records(n: int = 6, entropy: float = 3.0) -> list[dict]:
    return [
        {"step": 10 * i, "epoch": 0, "loss": 5.0 - 0.1 * i, "lr": 1e-4, "wd": 0.04, "momentum": 0.996,
         "teacher_temp": 0.04, "img_per_s": 50.0, "teacher_entropy": entropy, "teacher_batch_entropy": 5.0,
         "kl": 0.5, "teacher_std": 0.05, "log_k": math.log(4096), "embed_dim": 192}
        for i in range(n)
    ]


def test_collapse_figure_draws_thresholds_and_verdict() -> None:
    figure = collapse_figure(_records())
    title = figure._suptitle.get_text()
    assert title.startswith("healthy")
    entropy_ax = figure.axes[0]
    levels = [line.get_ydata()[0] for line in entropy_ax.get_lines()[2:]]
    assert pytest.approx(math.log(4096)) in levels and pytest.approx(math.log(2)) in levels
    std_levels = [line.get_ydata()[0] for line in figure.axes[2].get_lines()[1:]]
    assert pytest.approx(1 / math.sqrt(192)) in std_levels
    assert to_png(figure).startswith(b"\x89PNG")


def test_uniform_collapse_is_named() -> None:
    records = _records(entropy=math.log(4096))
    for r in records:
        r["kl"] = 0.0
    assert verdict_line(records).startswith("uniform collapse")


def test_missing_keys_give_a_reason_not_a_crash() -> None:
    records = [{"step": 1, "loss": 2.0}]
    assert "no collapse verdict" in verdict_line(records)
    assert to_png(training_figure(records)).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="none of"):
        training_figure([{"step": 1}])
