"""Prepared datasets: where ``dinomed datasets prepare`` writes them and how a recipe finds one by name.

A prepared dataset is a folder holding ``manifest.csv`` (read like any manifest) and ``dataset.json`` (what the
catalogue verified and converted, including the untouched source folder the manifest points into).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["MANIFEST", "SUMMARY", "data_home", "resolve_prepared", "prepared_root"]

MANIFEST = "manifest.csv"
SUMMARY = "dataset.json"


def data_home() -> Path:
    """Default home of prepared datasets: ``$DINOMED_DATA`` or ``~/.dinomed/datasets``."""
    return Path(os.environ.get("DINOMED_DATA", Path.home() / ".dinomed" / "datasets")).expanduser()


def resolve_prepared(name_or_path: str | Path) -> Path:
    """Manifest of a prepared dataset given its manifest, its folder, or a card name under :func:`data_home`.

    A recipe then reads it with ``data.source: manifest`` and ``data.manifest: <returned path>``.
    """
    path = Path(name_or_path).expanduser()
    candidates = [path, path / MANIFEST, data_home() / str(name_or_path) / MANIFEST]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"no prepared dataset '{name_or_path}': looked for {', '.join(map(str, candidates))}; "
                            f"run `dinomed datasets prepare {name_or_path} --source PATH` first")


def prepared_root(manifest: str | Path) -> Path | None:
    """Data root for a prepared manifest: the folder holding both it and the source it points into.

    Prepared manifests reference the untouched source (``../../src/...``) next to files converted into the output
    folder, so their root is the common ancestor; ``None`` for a manifest that ``prepare`` did not write.
    """
    summary = Path(manifest).resolve().parent / SUMMARY
    if not summary.is_file():
        return None
    try:
        source = json.loads(summary.read_text(encoding="utf-8"))["source"]
    except (ValueError, KeyError):
        raise ValueError(f"{summary}: not a dinomed dataset summary (expected a 'source' entry)") from None
    return Path(os.path.commonpath([summary.parent, Path(source).resolve()]))
