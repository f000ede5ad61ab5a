"""Run directories: creation, the resolved config, and the append-only ``metrics.jsonl`` log."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """Create ``output_dir/name``; refuses to reuse a folder that already holds a run (nothing is overwritten)."""
    run_dir = Path(output_dir) / name
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir}: already holds a run; use --resume {run_dir} or another run name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def default_run_name(recipe_name: str) -> str:
    return f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become strings so the log stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Append-only JSON-lines log; on resume, records after the checkpoint's step are dropped first."""

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``; a truncated last line (killed run) is ignored."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Atomically write a JSON summary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path
