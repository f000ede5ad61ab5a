"""Training curves and collapse diagnostics of a DINO run, drawn from its ``metrics.jsonl``.

The collapse panels draw the thresholds that :mod:`dinomed.ssl.monitor` uses, so a reader sees *why* the verdict
says what it says: teacher entropy against ``ln K`` (uniform collapse when it reaches it while the student-teacher
KL is ~0), batch entropy against ``ln 2`` (one-dimension collapse) and the teacher feature std against
``1/sqrt(d)`` (Caron et al., 2021, Sec. 5.3; Chen & He, 2021).

Example:
    >>> records = read_metrics(run_dir / "metrics.jsonl")
    >>> Path("collapse.png").write_bytes(to_png(collapse_figure(records)))
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dinomed.ssl import monitor

Records = Sequence[Mapping[str, Any]]
TRAINING_KEYS = ("loss", "lr", "wd", "momentum", "teacher_temp", "img_per_s")


def to_png(figure: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (no pyplot state, so safe in tests, servers and notebooks)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _series(records: Records, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry ``key``; "nan"/"inf" strings from the log become floats."""
    steps, values = [], []
    for record in records:
        if key in record and record[key] is not None:
            steps.append(float(record.get("step", len(steps))))
            values.append(float(record[key]))
    return steps, values


def _last(records: Records, key: str) -> float | None:
    values = _series(records, key)[1]
    return values[-1] if values else None


def training_figure(records: Records) -> Figure:
    """Loss and the schedules (lr, weight decay, teacher momentum and temperature) plus throughput, per step."""
    keys = [k for k in TRAINING_KEYS if _series(records, k)[1]]
    if not keys:
        raise ValueError(f"no training curves to draw: the records carry none of {list(TRAINING_KEYS)}")
    cols = 3
    rows = math.ceil(len(keys) / cols)
    figure = Figure(figsize=(4 * cols, 2.8 * rows))
    for index, key in enumerate(keys):
        ax = figure.add_subplot(rows, cols, index + 1)
        ax.plot(*_series(records, key), color="tab:blue")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _hline(ax: Axes, value: float | None, label: str, style: str) -> None:
    if value is not None and math.isfinite(value):
        ax.axhline(value, color="black" if style == "-" else "tab:red", linestyle=style, linewidth=1, label=label)


def collapse_figure(records: Records, *, title: bool = True) -> Figure:
    """Four panels with the monitor's thresholds drawn and (``title``) its one-line verdict as the title."""
    if not records:
        raise ValueError("no metrics records: metrics.jsonl is empty")
    log_k, embed_dim = _last(records, "log_k"), _last(records, "embed_dim")
    figure = Figure(figsize=(11, 7))
    axes = [figure.add_subplot(2, 2, i + 1) for i in range(4)]

    ax = axes[0]
    ax.plot(*_series(records, "teacher_entropy"), label="teacher entropy (per sample)")
    ax.plot(*_series(records, "teacher_batch_entropy"), label="teacher entropy (batch mean)")
    _hline(ax, log_k, "ln K (uniform)", "-")
    _hline(ax, None if log_k is None else log_k - monitor.UNIFORM_ENTROPY_GAP, "uniform-collapse zone", "--")
    _hline(ax, monitor.ONE_DIM_BATCH_ENTROPY, "ln 2 (one-dimension collapse below)", ":")
    ax.set_title("teacher entropy (nats)")

    ax = axes[1]
    ax.plot(*_series(records, "kl"), label="KL(teacher || student)")
    _hline(ax, monitor.UNIFORM_KL, f"{monitor.UNIFORM_KL} nats (copying the teacher)", "--")
    ax.set_title("student-teacher KL (nats)")

    ax = axes[2]
    ax.plot(*_series(records, "teacher_std"), label="std of normalised teacher CLS")
    spread = None if not embed_dim else 1.0 / math.sqrt(embed_dim)
    _hline(ax, spread, "1/sqrt(d) (spread on the sphere)", "-")
    _hline(ax, None if spread is None else monitor.STD_FRACTION * spread, "collapse threshold", "--")
    ax.set_title("teacher feature std")

    ax = axes[3]
    ax.plot(*_series(records, "loss"), label="DINO loss")
    ax.set_title("loss")

    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(verdict_line(records), fontsize=9, wrap=True)
    figure.tight_layout()
    return figure


def verdict_line(records: Records) -> str:
    """``"<verdict>: <explanation>"`` from :func:`dinomed.ssl.monitor.collapse_verdict`, or why there is none."""
    try:
        verdict, why = monitor.collapse_verdict(records)
    except (KeyError, ValueError) as err:
        return f"no collapse verdict: {err.args[0] if err.args else err}"
    return f"{verdict}: {why}"


# (probe key, title, what it is compared with): each panel draws the value and its reference as a dashed line
QUALITY_PANELS = (
    ("rankme", "RankMe (effective rank of teacher CLS)", "rankme_random"),
    ("knn", "kNN balanced accuracy (held-out probe groups)", "knn_random"),
    ("jaccard", "attention Jaccard vs masks (best head)", "jaccard_random"),
    ("cka_init", "similarity to the init (forgetting)", None),
)


def quality_figure(records: Records, *, title: str = "") -> Figure:
    """The probes of :mod:`dinomed.ssl.probes` over the run, each against its random-init value (dashed); a
    continued run adds linear CKA and the mean cosine to its init's features."""
    panels = [p for p in QUALITY_PANELS if _series(records, p[0])[1]]
    if not panels:
        raise ValueError("no probe values in the records (train.probe_every 0, or a run from before probes)")
    figure = Figure(figsize=(4.2 * len(panels), 3.2))
    for index, (key, name, reference) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), index + 1)
        ax.plot(*_series(records, key), marker="o", markersize=3, label="teacher")
        if reference is not None:
            _hline(ax, _last(records, reference), "random init", "--")
        else:
            ax.plot(*_series(records, "cos_init"), marker="s", markersize=3, label="mean cosine to the init")
            ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(title, fontsize=9, wrap=True)
    figure.tight_layout()
    return figure
