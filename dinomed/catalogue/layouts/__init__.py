"""Layout converters, one module per on-disk layout, registered by name for the cards to reference."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomed.catalogue.layouts import class_folders, coco, csv_index, depth_sequences, paired_folders, voc  # noqa: F401
from dinomed.catalogue.layouts.base import (
    Box,
    CommonOptions,
    Layout,
    SourceItem,
    get_layout,
    layout_names,
    register_layout,
)
from dinomed.config import ConfigError, from_dict

if TYPE_CHECKING:
    from dinomed.catalogue.cards import LayoutSpec

__all__ = ["Box", "CommonOptions", "Layout", "SourceItem", "get_layout", "layout_names", "register_layout",
           "parse_options", "validate_options"]


def parse_options(layout_spec: LayoutSpec, *, source: str = "", prefix: str = "options") -> CommonOptions:
    """The layout's ``options`` mapping as the converter's typed Options (unknown keys fail naming the key)."""
    converter = get_layout(layout_spec.converter)
    return from_dict(converter.Options, layout_spec.options, source=source, prefix=prefix)


def validate_options(layout_spec: LayoutSpec, *, source: str, prefix: str) -> None:
    """Fail at card load when the converter is unknown or its options do not fit its schema."""
    try:
        get_layout(layout_spec.converter)
    except ValueError as err:
        raise ConfigError(source, prefix.rsplit(".", 1)[0] + ".converter", str(err)) from None
    parse_options(layout_spec, source=source, prefix=prefix)
