"""Run directories: creating one (never over an existing run), resuming one (only settings that do not change
the optimisation path may change), and the append-only ``metrics.jsonl`` log.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dinomed.config import ConfigError
from dinomed.engine.loggers import Logger

__all__ = ["CONFIG_FILE", "INIT_FILE", "METRICS_FILE", "RESUMABLE", "SUMMARY_FILE", "MetricsLog", "check_resumable", "default_run_name",
           "new_run_dir", "read_metrics", "run_config"]

CONFIG_FILE = "config.yaml"  # the fully resolved recipe
METRICS_FILE = "metrics.jsonl"  # one record per log step
SUMMARY_FILE = "summary.json"  # a pretraining run's final metrics and verdict
INIT_FILE = "init.json"  # what a continued pretraining loaded from its init weights
# Settings a resumed run may change: where and how fast it computes, not what it computes.
RESUMABLE = ("train.device", "train.precision", "train.num_threads", "data.num_workers", "train.loggers")


def default_run_name(*parts: str) -> str:
    """``part1-part2-<timestamp>``: the name of a run directory nobody named."""
    return "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])


@contextmanager
def new_run_dir(output_dir: str | Path, name: str) -> Iterator[Path]:
    """Create ``output_dir/name`` for a new run and yield it; a folder holding a run is refused.

    If the block fails (bad data, bad weights ...), what this call created is removed, so a run that could not
    start leaves nothing behind for the next one to trip over.
    """
    run_dir = Path(output_dir) / name
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir}: already holds a run; use --resume {run_dir} or another run name "
                              "(nothing was overwritten)")
    existed = run_dir.exists()
    before = set(run_dir.iterdir()) if existed else set()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield run_dir
    except BaseException:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            for path in set(run_dir.iterdir()) - before:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def run_config(run_dir: str | Path, kind: str) -> Path:
    """The ``config.yaml`` of an existing run (``kind`` names the command in the error)."""
    config = Path(run_dir) / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir}: not a {kind} run directory (no {CONFIG_FILE})")
    return config


def check_resumable(keys: Iterable[str], allowed: Iterable[str] = RESUMABLE) -> None:
    """Refuse overrides that would change a resumed run's optimisation path, naming the key and the allowed ones."""
    allowed = tuple(allowed)
    for key in keys:
        if key not in allowed:
            raise ConfigError("--set", key, f"cannot change this when resuming (it would change the run); "
                              f"allowed: {', '.join(allowed)}")


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become strings so the log stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Append-only JSON-lines log, also sent to live ``loggers`` (TensorBoard); on resume, records after the
    checkpoint's step are dropped first."""

    def __init__(self, path: str | Path, *, resume_step: int | None = None, loggers: Sequence[Logger] = ()) -> None:
        self.path, self.loggers = Path(path), list(loggers)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``; a truncated last line (killed run) is ignored."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
