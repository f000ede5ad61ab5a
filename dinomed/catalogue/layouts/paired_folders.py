"""Layout ``paired-folders``: an image folder and a mask folder whose files pair up by file stem.

Kvasir-SEG (``Kvasir-SEG/images/*.jpg`` + ``Kvasir-SEG/masks/*.jpg``) and the original CVC-ClinicDB archive
(``Original/<n>.tif`` + ``Ground Truth/<n>.tif``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinomed.catalogue.layouts.base import IMAGE_EXTENSIONS, CommonOptions, Layout, SourceItem, file_attrs, \
    list_images, register_layout
from dinomed.config import option


@dataclass
class PairedFolderOptions(CommonOptions):
    images: str = option("images", "image folder relative to the source")
    masks: str = option("masks", "mask folder relative to the source; a mask has the image's file stem")
    extensions: list[str] = option(list(IMAGE_EXTENSIONS), "image and mask file extensions")


@register_layout("paired-folders")
class PairedFolders(Layout):
    """Image + binary mask pairs; an image without its mask is an error naming both paths."""

    Options = PairedFolderOptions

    def items(self, source: Path, options: PairedFolderOptions) -> Iterator[SourceItem]:
        masks = {p.stem: p for p in list_images(source / options.masks, options.extensions)}
        for image in list_images(source / options.images, options.extensions):
            mask = masks.get(image.stem)
            if mask is None:
                raise ValueError(f"{image}: no mask with stem '{image.stem}' in {source / options.masks}")
            yield SourceItem(image=image.relative_to(source), mask=mask.relative_to(source), attrs=file_attrs(image))
