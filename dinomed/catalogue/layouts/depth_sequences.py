"""Layout ``depth-sequences``: one folder per video sequence with an image folder and a depth-map folder.

Hamlyn as rectified by Recasens et al. (Endo-Depth-and-Motion): ``rectifiedNN/color/*.jpg`` and
``rectifiedNN/depth/*.png`` (16-bit). The sequence folder name is an attribute (``sequence``) for grouping,
because consecutive frames of one video are near-duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinomed.catalogue.layouts.base import IMAGE_EXTENSIONS, CommonOptions, Layout, SourceItem, file_attrs, \
    list_images, register_layout
from dinomed.config import option


@dataclass
class DepthSequenceOptions(CommonOptions):
    sequences: str = option("rectified*", "glob (relative to the source) matching the sequence folders")
    image_dir: str = option("color", "image folder inside a sequence folder")
    depth_dir: str = option("depth", "depth-map folder inside a sequence folder; maps share the image's stem")
    depth_extension: str = option(".png", "depth-map file extension")
    extensions: list[str] = option(list(IMAGE_EXTENSIONS), "image file extensions")


@register_layout("depth-sequences")
class DepthSequences(Layout):
    """Frames with metric depth maps, one folder per sequence; a frame without its map is an error."""

    Options = DepthSequenceOptions

    def items(self, source: Path, options: DepthSequenceOptions) -> Iterator[SourceItem]:
        for sequence in sorted(p for p in source.glob(options.sequences) if p.is_dir()):
            for image in list_images(sequence / options.image_dir, options.extensions):
                depth = sequence / options.depth_dir / f"{image.stem}{options.depth_extension}"
                if not depth.is_file():
                    raise ValueError(f"{image}: depth map {depth} is missing")
                yield SourceItem(image=image.relative_to(source), depth=depth.relative_to(source),
                                 attrs={"sequence": sequence.name, **file_attrs(image)})
