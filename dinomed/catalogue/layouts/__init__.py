"""Layout converters, one module per on-disk layout, registered by name for the cards to reference."""

from __future__ import annotations

from typing import Any

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

__all__ = ["Box", "CommonOptions", "Layout", "SourceItem", "get_layout", "layout_names", "register_layout",
           "parse_options", "validate_options"]


def parse_options(converter: str, options: dict[str, Any], *, source: str = "", prefix: str = "options") -> CommonOptions:
    """A layout's ``options`` mapping as converter ``converter``'s typed Options (unknown keys fail naming the key)."""
    return from_dict(get_layout(converter).Options, options, source=source, prefix=prefix)


def validate_options(converter: str, options: dict[str, Any], *, source: str, prefix: str) -> None:
    """Fail at card load when the converter is unknown or its options do not fit its schema."""
    try:
        get_layout(converter)
    except ValueError as err:
        raise ConfigError(source, prefix.rsplit(".", 1)[0] + ".converter", str(err)) from None
    parse_options(converter, options, source=source, prefix=prefix)
