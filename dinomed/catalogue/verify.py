"""Check an unpacked source against its card before converting: layout, expected files, checksums, count.

Errors list everything that is wrong at once (all missing paths, all checksum mismatches) so a partial
download is diagnosed in one run.
"""

from __future__ import annotations

from pathlib import Path

from dinomed.catalogue.cards import DatasetCard, LayoutSpec
from dinomed.catalogue.fingerprints import sha256_file


class SourceError(ValueError):
    """The source folder does not match the card: names the folder and every problem found."""


def missing_paths(source: Path, layout: LayoutSpec) -> list[str]:
    """Required paths (globs allowed) of ``layout`` with no match under ``source``."""
    return [pattern for pattern in layout.required if not any(source.glob(pattern))]


def select_layout(card: DatasetCard, source: Path, name: str | None = None) -> LayoutSpec:
    """The named layout, or the first one whose required paths all exist; the error lists what each lacks."""
    if not source.is_dir():
        raise SourceError(f"source {source} is not a folder; unpack the archive ({card.source.archive}) first")
    candidates = [card.layout(name)] if name else card.layouts
    report = []
    for layout in candidates:
        missing = missing_paths(source, layout)
        if not missing:
            return layout
        report.append(f"layout '{layout.name}' is missing: {', '.join(missing)}")
    raise SourceError(f"{source} does not look like {card.title} ({card.source.archive}):\n  " + "\n  ".join(report))


def check_checksums(source: Path, layout: LayoutSpec) -> None:
    """Compare every published checksum; the error lists each file that is absent or differs."""
    problems = []
    for rel, expected in sorted(layout.checksums.items()):
        path = source / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        actual = sha256_file(path)
        if actual != expected.lower():
            problems.append(f"{rel}: sha256 {actual}, expected {expected.lower()}")
    if problems:
        raise SourceError(f"{source}: checksums do not match the card ({layout.checksums_note}):\n  "
                          + "\n  ".join(problems))


def check_count(source: Path, layout: LayoutSpec, found: int) -> str | None:
    """Error for an exact count that differs; a warning string for an approximate one off by more than 5 %."""
    if layout.count is None or found == layout.count:
        return None
    message = f"{source}: layout '{layout.name}' yields {found} images, card says {layout.count} ({layout.count_note})"
    if layout.count_exact:
        raise SourceError(message + "; the archive is incomplete or not the published version")
    return message if abs(found - layout.count) > 0.05 * layout.count else None


def check_referenced(source: Path, paths: list[Path]) -> None:
    """Every image / mask / depth file the converter named must exist (an index can outlive deleted files)."""
    missing = [str(p) for p in paths if not (source / p).is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise SourceError(f"{source}: {len(missing)} referenced file(s) missing: {shown}")
