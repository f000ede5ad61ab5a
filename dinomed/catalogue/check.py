"""``check``: audit a manifest for the faults that silently inflate scores or crash training.

Reported: missing or unreadable files; exact duplicate images (same sha256 of the bytes); near-duplicate images
(dHash within a Hamming threshold) across splits — or, without a split column, across groups, which hints at a
group id that misses links; groups that appear in more than one split; split values training would refuse (empty
or not train / val / test or a synonym, read as training reads them); class balance per split (the given split).
A report is ``ok`` when nothing leaks between splits, every split value is usable and no file is missing or
unreadable.

    report = check_manifest("~/.dinomed/datasets/kermany-oct2017/manifest.csv")
    report.ok, report.groups_crossing
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from dinomed.catalogue.fingerprints import dhash, hamming_pairs
from dinomed.data.datasets import read_manifest
from dinomed.data.readers import DataError
from dinomed.data.records import canonical_split
from dinomed.engine import progress_bar

TARGETS = ("mask", "depth")


@dataclass
class Entry:
    """One manifest row, paths as written (relative to the manifest folder)."""

    image: str
    label: str = ""
    mask: str = ""
    depth: str = ""
    group: str = ""
    split: str = ""


@dataclass
class CheckReport:
    """Findings of :func:`check_manifest`; ``to_dict`` is the ``--json`` output."""

    manifest: str
    images: int
    has_split: bool
    threshold: int
    missing: list[dict[str, str]] = field(default_factory=list)
    bad_splits: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    groups_crossing: dict[str, list[str]] = field(default_factory=dict)
    class_balance: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)

    @property
    def leaks(self) -> int:
        """Findings that put the same patient / image on both sides of a split."""
        cross = [d for d in self.exact_duplicates + self.near_duplicates if d["crosses_split"]]
        return len(self.groups_crossing) + len(cross)

    @property
    def ok(self) -> bool:
        return not (self.leaks or self.missing or self.unreadable or self.bad_splits)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "leaks": self.leaks, "ok": self.ok}


def read_entries(path: Path) -> tuple[list[Entry], list[dict[str, str]]]:
    """Rows of a CSV or JSON-list manifest, read exactly as training reads it (:func:`read_manifest`: encoding,
    byte-order mark, blanks), and the rows whose split training would refuse (empty or not train / val / test or a
    synonym). Split values are given their canonical names; unknown columns are ignored; a row without an
    ``image`` value is an error."""
    names = Entry.__dataclass_fields__
    rows = read_manifest(path)
    has_split = any(row.get("split") for row in rows)
    entries, bad = [], []
    for i, row in enumerate(rows, start=1):
        if not row.get("image"):
            raise DataError(path, f"row {i} has no 'image' value (columns: {sorted(row)})")
        entry = Entry(**{k: v for k, v in row.items() if k in names})
        if has_split:
            split = canonical_split(entry.split)
            if split is None:
                bad.append({"row": str(i), "image": entry.image, "split": entry.split})
            entry.split = split or ""
        entries.append(entry)
    return entries, bad


def check_manifest(manifest: str | Path, *, threshold: int = 4, progress: bool = True) -> CheckReport:
    """Audit ``manifest``; ``threshold`` is the dHash Hamming distance (of 64 bits) counted as near-duplicate."""
    path = Path(manifest).expanduser()
    entries, bad_splits = read_entries(path)
    root = path.parent
    report = CheckReport(manifest=str(path), images=len(entries), has_split=any(e.split for e in entries),
                         threshold=threshold, bad_splits=bad_splits)
    digests: dict[int, str] = {}
    hashes: dict[int, int] = {}
    with progress_bar("check", disable=not progress, transient=True) as bar:
        task = bar.add_task("check", total=len(entries))
        for i, entry in enumerate(entries):
            _fingerprint(i, entry, root, report, digests, hashes)
            for column in TARGETS:
                _check_target(entry, column, root, report)
            bar.advance(task)
    report.exact_duplicates = _exact_duplicates(entries, digests)
    report.near_duplicates = _near_duplicates(entries, hashes, threshold, report.has_split)
    report.groups_crossing = _groups_crossing(entries)
    report.class_balance = _class_balance(entries)
    report.groups = _group_stats(entries)
    return report


def _fingerprint(i: int, entry: Entry, root: Path, report: CheckReport, digests: dict[int, str],
                 hashes: dict[int, int]) -> None:
    file = root / entry.image
    if not file.is_file():
        report.missing.append({"column": "image", "path": entry.image})
        return
    data = file.read_bytes()
    digests[i] = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            hashes[i] = dhash(image)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        report.unreadable.append({"column": "image", "path": entry.image, "error": str(err)})


def _check_target(entry: Entry, column: str, root: Path, report: CheckReport) -> None:
    rel = getattr(entry, column)
    if not rel:
        return
    file = root / rel
    if not file.is_file():
        report.missing.append({"column": column, "path": rel})
        return
    try:
        if file.suffix.lower() == ".npy":
            np.load(file, mmap_mode="r", allow_pickle=False)
        else:
            with Image.open(file) as image:
                image.verify()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        report.unreadable.append({"column": column, "path": rel, "error": str(err)})


def _exact_duplicates(entries: list[Entry], digests: dict[int, str]) -> list[dict[str, Any]]:
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, digest in digests.items():
        by_digest[digest].append(i)
    found = []
    for digest, idx in sorted(by_digest.items()):
        if len(idx) > 1:
            found.append({"sha256": digest, "images": [entries[i].image for i in idx],
                          "crosses_split": len({entries[i].split for i in idx}) > 1,
                          "crosses_group": len({entries[i].group or entries[i].image for i in idx}) > 1})
    return found


def _near_duplicates(entries: list[Entry], hashes: dict[int, int], threshold: int,
                     by_split: bool) -> list[dict[str, Any]]:
    """Near-identical pairs in different splits (a leak) or, with no split column, in different groups."""
    idx = sorted(hashes)
    names = [entries[i].split if by_split else (entries[i].group or entries[i].image) for i in idx]
    codes = {name: c for c, name in enumerate(sorted(set(names)))}
    keys = np.array([codes[name] for name in names], dtype=np.int64)
    values = np.array([hashes[i] for i in idx], dtype=np.uint64)
    found = []
    for a, b, distance in hamming_pairs(values, threshold, keys):
        ea, eb = entries[idx[a]], entries[idx[b]]
        found.append({"images": [ea.image, eb.image], "distance": distance, "splits": [ea.split, eb.split],
                      "groups": [ea.group, eb.group], "crosses_split": by_split})
    return found


def _groups_crossing(entries: list[Entry]) -> dict[str, list[str]]:
    splits: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        if e.group and e.split:
            splits[e.group].add(e.split)
    return {g: sorted(s) for g, s in sorted(splits.items()) if len(s) > 1}


def _class_balance(entries: list[Entry]) -> dict[str, dict[str, int]]:
    balance: dict[str, Counter] = defaultdict(Counter)
    for e in entries:
        balance[e.split or "all"][e.label or "(unlabelled)"] += 1
    return {split: dict(sorted(counts.items())) for split, counts in sorted(balance.items())}


def _group_stats(entries: list[Entry]) -> dict[str, Any]:
    sizes = Counter(e.group for e in entries if e.group)
    labels: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        if e.group and e.label:
            labels[e.group].add(e.label)
    counts = sorted(sizes.values())
    return {"groups": len(sizes), "ungrouped_images": sum(1 for e in entries if not e.group),
            "images_per_group": {"min": counts[0], "median": median(counts), "max": counts[-1]} if counts else {},
            "largest": dict(sizes.most_common(5)),
            "multi_label_groups": sum(1 for s in labels.values() if len(s) > 1)}
