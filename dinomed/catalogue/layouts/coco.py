"""Layout ``coco``: COCO-style box annotations, one JSON per published split (or one JSON with a split field).

HIT-UAV's repository (``normal_json/annotations/{train,val,test}.json`` with the non-standard keys ``annotation``
and ``filename``), FLIR ADAS v2 (``images_thermal_{train,val}/coco.json`` with ``data/`` image folders) and the
dinomed HIT-UAV sample (one ``annotations.json`` whose images carry ``split``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinomed.catalogue.layouts.base import Box, CommonOptions, Layout, SourceItem, file_attrs, register_layout
from dinomed.config import option


@dataclass
class CocoFile:
    """One annotation file and the folder its ``file_name`` s are relative to."""

    json: str = option("", "annotation JSON relative to the source")
    images: str = option(".", "folder the images' file_name is relative to")
    split: str | None = option(None, "published split of every image in this file (else see split_field)")


@dataclass
class CocoOptions(CommonOptions):
    files: list[CocoFile] = option([], "annotation files to read")
    split_field: str | None = option(None, "image field holding the split when one file covers all splits")
    aliases: dict[str, str] = option({}, "non-standard key -> COCO key, e.g. {annotation: annotations}")

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("coco layout needs at least one entry in files")


def _standardise(value: Any, aliases: dict[str, str]) -> Any:
    """Rename non-standard keys at every level (HIT-UAV writes ``filename`` for ``file_name``)."""
    if isinstance(value, dict):
        return {aliases.get(k, k): _standardise(v, aliases) for k, v in value.items()}
    if isinstance(value, list):
        return [_standardise(v, aliases) for v in value]
    return value


@register_layout("coco")
class Coco(Layout):
    """Images listed in COCO JSON files, with their boxes; scalar image fields become attributes."""

    Options = CocoOptions

    def items(self, source: Path, options: CocoOptions) -> Iterator[SourceItem]:
        for entry in options.files:
            path = source / entry.json
            try:
                data = _standardise(json.loads(path.read_text(encoding="utf-8")), options.aliases)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from None
            for key in ("images", "annotations", "categories"):
                if key not in data:
                    raise ValueError(f"{path}: no '{key}' list (keys: {sorted(data)}); set layout option aliases")
            names = {c["id"]: str(c["name"]) for c in data["categories"]}
            boxes: dict[Any, list[Box]] = {}
            for ann in data["annotations"]:
                boxes.setdefault(ann["image_id"], []).append(Box(names[ann["category_id"]], tuple(ann["bbox"])))
            for image in data["images"]:
                yield self._item(image, boxes.get(image["id"], []), entry, options)

    @staticmethod
    def _item(image: dict[str, Any], boxes: list[Box], entry: CocoFile, options: CocoOptions) -> SourceItem:
        rel = Path(entry.images) / image["file_name"]
        split = entry.split if entry.split else image.get(options.split_field) if options.split_field else None
        attrs = {k: str(v) for k, v in image.items() if isinstance(v, (str, int, float))}
        return SourceItem(image=rel, split=split, boxes=boxes, attrs={**attrs, **file_attrs(rel)})
