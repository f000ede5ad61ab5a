"""Live training curves in the tools researchers watch runs with: TensorBoard (``train.loggers: [tensorboard]``).

Every record written to ``metrics.jsonl`` (loss, lr, momentum, teacher temperature, collapse statistics, probes,
img/s, validation metrics) also goes, as scalars at its step, through the library's own writer
(``torch.utils.tensorboard.SummaryWriter``) into ``RUN_DIR/tensorboard``: ``tensorboard --logdir runs/``. A resumed
run first drops the events after its checkpoint, as ``metrics.jsonl`` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dinomed.extras import require

__all__ = ["LOGGERS", "Logger", "TensorBoardLogger", "check_loggers", "open_loggers"]

LOGGERS = ("tensorboard",)
SKIPPED = {"step", "epoch", "time", "log_k", "embed_dim"}  # bookkeeping, not curves


class Logger(Protocol):
    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Writes each numeric value of a record as the scalar ``<prefix>/<key>`` at the record's step."""

    def __init__(self, run_dir: Path, prefix: str, *, resume_step: int | None = None) -> None:
        check_loggers(["tensorboard"])
        from torch.utils.tensorboard import SummaryWriter

        self.prefix = prefix
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: Mapping[str, Any]) -> None:
        step = int(record.get("step", 0))
        for key, value in record.items():
            if key not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(f"{self.prefix}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def check_loggers(names: Sequence[str]) -> None:
    """Fail before a run starts when a logger of ``train.loggers`` is unknown or its extra is not installed."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ValueError(f"train.loggers: unknown logger(s) {unknown}; valid loggers are {list(LOGGERS)}")
    if "tensorboard" in names:
        require("tensorboard", "tensorboard", "train.loggers: [tensorboard]")


def open_loggers(names: Sequence[str], run_dir: Path, prefix: str, *, resume_step: int | None = None) -> list[Logger]:
    """The loggers ``names`` (``train.loggers``) of a run, writing under ``run_dir``."""
    check_loggers(names)
    return [TensorBoardLogger(run_dir, prefix, resume_step=resume_step) for _ in names]
