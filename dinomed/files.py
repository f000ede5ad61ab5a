"""Atomic file writing: the one way dinomed writes checkpoints, weights, summaries and caches.

Content goes to a hidden temporary file next to the target, is flushed to disk, then renamed over the target,
so a run killed at any moment leaves either the previous file or the new one, never half of one.

Example:
    >>> atomic_write("run/summary.json", json.dumps(summary))
    >>> atomic_write("run/weights.safetensors", lambda tmp: save_file(state, str(tmp)))
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes the temporary path it is given) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Atomically write ``data`` as indented JSON (values JSON cannot hold are written as strings)."""
    return atomic_write(path, json.dumps(data, indent=2, default=str))
