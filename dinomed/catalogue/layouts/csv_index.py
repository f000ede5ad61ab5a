"""Layout ``csv-index``: a CSV naming image (and mask) paths relative to itself, one row per image.

The dinomed sample copies in shared/data use it (``oct/index.csv`` with ``patient_id``,
``endoscopy/cvc-clinicdb/index.csv`` with ``frame``), as does any curated export with one row per image.
Every column becomes an attribute the card's group template can use.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinomed.catalogue.layouts.base import CommonOptions, Layout, SourceItem, file_attrs, register_layout
from dinomed.config import option


@dataclass
class CsvIndexOptions(CommonOptions):
    index: str = option("index.csv", "CSV file relative to the source folder; paths in it are relative to it")
    image: str = option("image", "column holding the image path")
    label: str | None = option(None, "column holding the class name")
    mask: str | None = option(None, "column holding the mask path")
    depth: str | None = option(None, "column holding the depth map path")
    split: str | None = option(None, "column holding the published split")
    where: dict[str, str] = option({}, "keep only rows whose column equals the value, e.g. {source: octdl}")


@register_layout("csv-index")
class CsvIndex(Layout):
    """One CSV row per image; paths resolved against the CSV's folder."""

    Options = CsvIndexOptions

    def items(self, source: Path, options: CsvIndexOptions) -> Iterator[SourceItem]:
        index = source / options.index
        with index.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            wanted = [c for c in (options.image, options.label, options.mask, options.depth, options.split, *options.where)
                      if c]
            absent = [c for c in wanted if c not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(f"{index}: missing column(s) {absent}; columns are {reader.fieldnames}")
            for row in reader:
                if any(row[k] != v for k, v in options.where.items()):
                    continue
                yield self._item(row, index.parent.relative_to(source), options)

    @staticmethod
    def _item(row: dict[str, str], folder: Path, options: CsvIndexOptions) -> SourceItem:
        def path(column: str | None) -> Path | None:
            return folder / row[column].lstrip("/") if column and row[column] else None

        image = folder / row[options.image].lstrip("/")  # OLIVES writes "/Trial/..." relative to its CSV
        return SourceItem(image=image, label=(row[options.label] or None) if options.label else None,
                          mask=path(options.mask), depth=path(options.depth),
                          split=(row[options.split] or None) if options.split else None,
                          attrs={**row, **file_attrs(image)})
