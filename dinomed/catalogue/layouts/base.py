"""What a layout converter yields and the registry cards refer to converters by.

A converter reads one on-disk layout of a public dataset and yields :class:`SourceItem` s: paths *relative to the
source folder* (so nothing is ever written there) plus label, published split, boxes and the attributes group ids
are derived from. Converting masks / depth / boxes to the manifest format is done once, by
:mod:`dinomed.catalogue.prepare`, so every layout produces the same output.

    @register_layout("class-folders")
    class ClassFolders(Layout):
        Options = ClassFolderOptions
        def items(self, source, options): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dinomed.config import option
from dinomed.registry import LAYOUTS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Box:
    """An axis-aligned box in pixels, COCO convention ``[x, y, width, height]``."""

    category: str
    bbox: tuple[float, float, float, float]


@dataclass
class SourceItem:
    """One image of the source as a converter sees it; paths are relative to the source folder.

    ``boxes`` is ``None`` when the layout has no box annotation and ``[]`` for an annotated image without objects.
    ``attrs`` (file name, index columns, COCO image fields) feed the card's group template.
    """

    image: Path
    label: str | None = None
    mask: Path | None = None
    depth: Path | None = None
    split: str | None = None
    boxes: list[Box] | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class CommonOptions:
    """Options every converter accepts: how masks and depth maps are turned into the manifest format."""

    mask_threshold: int = option(128, "binary masks: pixel >= threshold is foreground (class 1)", min=1, max=255)
    depth_scale: float = option(0.001, "depth image value x scale = depth in metres (0.001 for millimetre PNGs)",
                                min=0.0)


class Layout:
    """Base of layout converters: an ``Options`` dataclass and :meth:`items`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[CommonOptions]] = CommonOptions

    def items(self, source: Path, options: Any) -> Iterator[SourceItem]:  # pragma: no cover - abstract
        raise NotImplementedError



def register_layout(name: str) -> Callable[[type[Layout]], type[Layout]]:
    """Class decorator adding a converter to the registry under ``name`` (the card's ``converter`` key)."""
    return LAYOUTS.register(name)


def get_layout(name: str) -> Layout:
    """An instance of the converter registered as ``name``; the error lists the registered names."""
    return LAYOUTS.get(name)()


def layout_names() -> list[str]:
    return LAYOUTS.names()


def file_attrs(path: Path) -> dict[str, str]:
    """Attributes every item gets from its file name."""
    return {"file": path.name, "stem": path.stem}


def list_images(folder: Path, extensions: tuple[str, ...] | list[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly in ``folder``, sorted, hidden files (``._x`` from macOS archives) skipped."""
    allowed = {e.lower() for e in extensions}
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in allowed)
