"""Layout ``class-folders``: ``<root>/[<split>/]<CLASS>/<image>`` — the class is the folder name.

Kermany OCT2017 (``OCT2017/{train,test}/{CNV,DME,DRUSEN,NORMAL}/*.jpeg``) and OCTDL (``OCTDL/<CLASS>/*.jpg``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinomed.catalogue.layouts.base import IMAGE_EXTENSIONS, CommonOptions, Layout, SourceItem, file_attrs, \
    list_images, register_layout
from dinomed.config import option


@dataclass
class ClassFolderOptions(CommonOptions):
    root: str = option(".", "folder (relative to the source) holding the split or class folders")
    splits: dict[str, str] = option({}, "split folder name -> split name; empty when class folders sit in root")
    classes: list[str] = option([], "class folder names to read; empty reads every sub-folder")
    extensions: list[str] = option(list(IMAGE_EXTENSIONS), "image file extensions")


@register_layout("class-folders")
class ClassFolders(Layout):
    """Images sorted into one folder per class, optionally below one folder per published split."""

    Options = ClassFolderOptions

    def items(self, source: Path, options: ClassFolderOptions) -> Iterator[SourceItem]:
        root = source / options.root
        parts = options.splits.items() if options.splits else [("", None)]
        for folder, split in parts:
            base = root / folder
            if not base.is_dir():
                continue  # a split the distributor leaves out; `required` in the card says which must exist
            classes = options.classes or sorted(p.name for p in base.iterdir() if p.is_dir())
            for name in classes:
                if not (base / name).is_dir():
                    continue
                for path in list_images(base / name, options.extensions):
                    yield SourceItem(image=path.relative_to(source), label=name, split=split, attrs=file_attrs(path))
