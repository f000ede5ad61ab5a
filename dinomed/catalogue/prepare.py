"""``prepare``: verify an unpacked public dataset against its card and write ``manifest.csv`` + ``dataset.json``.

The source is only ever read. Output is written into a temporary folder next to ``out`` and renamed into place at
the end, so a failure leaves no half-written dataset and re-running replaces the previous output whole.

    result = prepare("cvc-clinicdb", "~/data/CVC-ClinicDB", out="~/.dinomed/datasets/cvc-clinicdb")
    result.manifest   # data.source: manifest, data.manifest: <this path>
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinomed.catalogue.cards import DatasetCard, LayoutSpec, load_card
from dinomed.catalogue.convert import needs_conversion, write_binary_mask, write_depth, write_image_png
from dinomed.catalogue.groups import GroupDeriver
from dinomed.catalogue.layouts import CommonOptions, SourceItem, get_layout, parse_options
from dinomed.catalogue.verify import SourceError, check_checksums, check_count, check_referenced, select_layout
from dinomed.data.prepared import MANIFEST, SUMMARY, data_home, resolve_prepared
from dinomed.engine import progress_bar

BOXES = "annotations.json"
COLUMNS = ("image", "label", "mask", "depth", "group")
SPLIT_POLICIES = ("auto", "keep", "drop")

__all__ = ["PrepareResult", "prepare", "data_home", "resolve_prepared", "SPLIT_POLICIES"]


@dataclass
class PrepareResult:
    """Where the prepared dataset is and what ``dataset.json`` says about it."""

    out: Path
    manifest: Path
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Row:
    item: SourceItem
    group: str | None
    split: str | None


def prepare(name: str | DatasetCard, source: str | Path, out: str | Path | None = None, *,
            layout: str | None = None, split_policy: str = "auto", progress: bool = True) -> PrepareResult:
    """Verify ``source`` against card ``name`` and write the manifest into ``out`` (default data_home()/name).

    ``split_policy``: the published split goes into the manifest's ``split`` column with ``keep``, never with
    ``drop``, and with ``auto`` only when no group crosses splits (a leaky published split is worse than none:
    dinomed's grouped splitter is used instead).
    """
    card = name if isinstance(name, DatasetCard) else load_card(name)
    if split_policy not in SPLIT_POLICIES:
        raise ValueError(f"split_policy must be one of {list(SPLIT_POLICIES)}, got '{split_policy}'")
    source = Path(source).expanduser().resolve()
    out = Path(out).expanduser().resolve() if out else (data_home() / card.name).resolve()
    _check_out(card, source, out)
    spec = select_layout(card, source, layout)
    check_checksums(source, spec)
    options = parse_options(spec.converter, spec.options, source=f"card {card.name}", prefix=f"layout {spec.name} options")
    items = sorted(get_layout(spec.converter).items(source, options), key=lambda i: str(i.image))
    if not items:
        raise SourceError(f"{source}: layout '{spec.name}' found no images ({spec.description})")
    check_referenced(source, [p for i in items for p in (i.image, i.mask, i.depth) if p is not None])
    warnings = [w for w in [check_count(source, spec, len(items))] if w]
    derive = GroupDeriver(card.groups)
    rows = [_Row(item, derive(item), item.split) for item in items]
    rows, split_info = _apply_split_policy(rows, split_policy, warnings)
    ungrouped = sum(r.group is None for r in rows)
    if ungrouped and card.groups.kind != "image":
        warnings.append(f"{ungrouped} image(s) have no {card.groups.kind} id and form their own group")
    summary = _summary(card, spec, source, rows, split_info, warnings)
    _write_atomically(out, lambda tmp: _write(tmp, out, source, rows, options, card, summary, progress))
    return PrepareResult(out=out, manifest=out / MANIFEST, summary=summary, warnings=warnings)


def _check_out(card: DatasetCard, source: Path, out: Path) -> None:
    """Refuse an output inside the source (never write there) or one that holds another dataset."""
    if out == source or source in out.parents:
        raise ValueError(f"--out {out} is inside the source {source}; the source is never written to")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    summary_path = out / SUMMARY
    try:
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ValueError(f"--out {out} is not empty and has no readable {SUMMARY}; choose an empty or new folder") \
            from None
    if previous.get("card") != card.name or previous.get("source") != str(source):
        raise ValueError(f"--out {out} already holds dataset '{previous.get('card')}' prepared from "
                         f"{previous.get('source')}; choose another --out or delete that folder")


def _apply_split_policy(rows: list[_Row], policy: str, warnings: list[str]) -> tuple[list[_Row], dict[str, Any]]:
    splits = Counter(r.split for r in rows if r.split)
    crossing = _groups_crossing(rows)
    info: dict[str, Any] = {"published": dict(sorted(splits.items())), "groups_crossing": len(crossing),
                            "kept": False}
    if not splits:
        return rows, info
    if len(splits) and any(r.split is None for r in rows):
        warnings.append("some images have no published split")
    keep = policy == "keep" or (policy == "auto" and not crossing)
    if crossing:
        warnings.append(f"published split leaks: {len(crossing)} group(s) appear in more than one split "
                        f"(e.g. {', '.join(sorted(crossing)[:3])}); "
                        + ("kept anyway (--split keep)" if keep else "split column dropped, use a grouped split"))
    info["kept"] = keep
    if not keep:
        rows = [_Row(r.item, r.group, None) for r in rows]
    return rows, info


def _groups_crossing(rows: list[_Row]) -> set[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.group is not None and r.split:
            seen[r.group].add(r.split)
    return {g for g, s in seen.items() if len(s) > 1}


def _summary(card: DatasetCard, spec: LayoutSpec, source: Path, rows: list[_Row], split_info: dict[str, Any],
             warnings: list[str]) -> dict[str, Any]:
    groups = Counter(r.group for r in rows if r.group is not None)
    return {
        "card": card.name, "card_version": card.version, "title": card.title, "modality": card.modality,
        "tasks": card.tasks, "labels": card.labels, "layout": spec.name, "converter": spec.converter,
        "source": str(source), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": len(rows),
        "classes": dict(sorted(Counter(r.item.label for r in rows if r.item.label).items())),
        "group_kind": card.groups.kind, "groups": len(groups), "images_per_group": dict(sorted(groups.items())),
        "splits": split_info, "masks": sum(r.item.mask is not None for r in rows),
        "depth_maps": sum(r.item.depth is not None for r in rows), "depth_unit": "m",
        "boxes": sum(len(r.item.boxes) for r in rows if r.item.boxes), "licence": card.licence,
        "terms": card.terms, "citation": card.citation, "warnings": warnings,
    }


def _write_atomically(out: Path, write: Any) -> None:
    """Run ``write(tmp)`` in a sibling temp folder, then swap it in; on failure nothing is left behind."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as err:
        raise PermissionError(f"cannot write next to --out {out}: {err.strerror or err}") from None
    try:
        write(tmp)
        if out.exists():
            old = out.with_name(f"{tmp.name}.old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(tmp: Path, out: Path, source: Path, rows: list[_Row], options: CommonOptions, card: DatasetCard,
           summary: dict[str, Any], progress: bool) -> None:
    """Manifest rows (paths relative to ``out``; the temp folder is its sibling), converted targets, boxes."""
    has_split = any(r.split for r in rows)
    records, boxed = [], []
    with progress_bar("prepare", disable=not progress, transient=True) as bar:
        task = bar.add_task(f"prepare {card.name}", total=len(rows))
        for row in rows:
            record = {"image": _image(row.item.image, source, tmp, out), "label": row.item.label or "",
                      "mask": _target(row.item.mask, "masks", ".png", tmp,
                                      lambda s, d: write_binary_mask(s, d, options.mask_threshold), source),
                      "depth": _target(row.item.depth, "depth", ".npy", tmp,
                                       lambda s, d: write_depth(s, d, options.depth_scale), source),
                      "group": row.group or ""}
            if has_split:
                record["split"] = row.split or ""
            records.append(record)
            if row.item.boxes is not None:
                boxed.append((record["image"], record.get("split"), row.item))
            bar.advance(task)
    with open(tmp / MANIFEST, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, "split"] if has_split else list(COLUMNS))
        writer.writeheader()
        writer.writerows(records)
    if boxed:
        _write_coco(tmp / BOXES, boxed, card.labels)
        summary["annotations"] = BOXES
    (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _image(rel: Path, source: Path, tmp: Path, out: Path) -> str:
    """Manifest path of an image: the source file itself, or a PNG copy when readers cannot decode its format."""
    if not needs_conversion(rel):
        return Path(os.path.relpath(source / rel, out)).as_posix()
    dst = Path("images") / rel.with_suffix(".png")
    write_image_png(source / rel, tmp / dst)
    return dst.as_posix()


def _target(rel: Path | None, folder: str, suffix: str, tmp: Path, write: Any, source: Path) -> str:
    if rel is None:
        return ""
    dst = Path(folder) / rel.with_suffix(suffix)
    write(source / rel, tmp / dst)
    return dst.as_posix()


def _write_coco(path: Path, boxed: list[tuple[str, str | None, SourceItem]], labels: list[str]) -> None:
    """COCO file of the boxes with ``file_name`` relative to the output folder (``data.source: coco``) and each
    image's ``split`` when the manifest keeps the published split (so both sources read the same split)."""
    found = sorted({b.category for _, _, item in boxed for b in item.boxes or []})
    names = [n for n in labels if n in found] + [n for n in found if n not in labels]
    ids = {n: i for i, n in enumerate(names)}
    images, annotations = [], []
    for image_id, (file_name, split, item) in enumerate(boxed):
        images.append({"id": image_id, "file_name": file_name, **({"split": split} if split else {})})
        for box in item.boxes or []:
            x, y, w, h = box.bbox
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": ids[box.category],
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": i, "name": n} for n, i in ids.items()]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}),
                    encoding="utf-8")
