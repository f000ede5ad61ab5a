"""Layout ``voc``: Pascal-VOC XML boxes in one folder, images in per-split folders, paired by file stem.

LLVIP (``LLVIP/infrared/{train,test}/*.jpg`` + ``LLVIP/Annotations/*.xml``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinomed.catalogue.layouts.base import IMAGE_EXTENSIONS, Box, CommonOptions, Layout, SourceItem, file_attrs, \
    list_images, register_layout
from dinomed.config import option


@dataclass
class VocOptions(CommonOptions):
    images: dict[str, str] = option({}, "published split -> image folder relative to the source")
    annotations: str = option("Annotations", "folder of <stem>.xml files relative to the source")
    extensions: list[str] = option(list(IMAGE_EXTENSIONS), "image file extensions")

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("voc layout needs images: {split: folder}")


def read_voc(path: Path) -> list[Box]:
    """Boxes of one VOC XML file as COCO ``[x, y, w, h]``."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not valid VOC XML ({err})") from None
    boxes = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        if b is None:
            raise ValueError(f"{path}: object without bndbox")
        x0, y0, x1, y1 = (float(b.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(Box(obj.findtext("name", "").strip(), (x0, y0, x1 - x0, y1 - y0)))
    return boxes


@register_layout("voc")
class Voc(Layout):
    """Images per split folder; an image without an XML file is an error naming the expected path."""

    Options = VocOptions

    def items(self, source: Path, options: VocOptions) -> Iterator[SourceItem]:
        for split, folder in options.images.items():
            for image in list_images(source / folder, options.extensions):
                xml = source / options.annotations / f"{image.stem}.xml"
                if not xml.is_file():
                    raise ValueError(f"{image}: annotation {xml} is missing")
                yield SourceItem(image=image.relative_to(source), split=split, boxes=read_voc(xml),
                                 attrs=file_attrs(image))
