"""Dataset cards: the typed schema of ``datasets/<name>.yaml`` and loading with errors that name file and key.

A card records what a public dataset is, where a researcher obtains it (we never download: most medical sets sit
behind a data-use agreement), what its archive looks like once unpacked, and how items are grouped
(patient / video / sequence) so that splits never leak one patient into two splits (Kermany's OCT2017 splits
share patients; CVC-ClinicDB's 612 frames come from 29 videos).

    card = load_card("kermany-oct2017")
    card.layouts[0].converter   # 'class-folders'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from dinomed.catalogue.layouts import validate_options
from dinomed.config import ConfigError, from_dict, load_yaml, option
from dinomed.registry import MODALITIES

# What a dataset's annotations support: a descriptive vocabulary of the cards (not code paths), so a fixed list.
ANNOTATION_TASKS = ("classification", "segmentation", "detection", "depth", "pretraining")
GROUP_KINDS = ("patient", "eye", "video", "sequence", "session", "image")

__all__ = ["DatasetCard", "SourceSpec", "LayoutSpec", "GroupSpec", "RecipeSpec", "cards_dir", "card_names",
           "load_card", "load_cards"]


@dataclass
class SourceSpec:
    """Where users obtain the data by hand: the page's title and the archive's name (no automatic download)."""

    page: str = option("", "title of the page that distributes the data (and its host, e.g. Mendeley Data)")
    archive: str = option("", "name of the archive(s) to download, as the page lists them")
    access: str = option("", "how access is granted: open download, registration, signed data-use agreement")


@dataclass
class LayoutSpec:
    """One accepted on-disk layout of the unpacked data and the converter (registered by name) that reads it.

    ``count`` is the number of items the converter yields; with ``count_exact: false`` it is only a published
    or approximate figure and a difference is reported, not an error. ``checksums`` maps a path relative to the
    source folder to its sha256 and is left empty unless the distributor publishes the values.
    """

    name: str = option("original", "layout name, chosen with `datasets prepare --layout`")
    converter: str = option("", "registered layout converter reading this layout (see dinomed.catalogue.layouts)")
    description: str = option("", "what the unpacked folder looks like")
    required: list[str] = option([], "paths (globs allowed) relative to the source folder that must exist")
    count: int | None = option(None, "number of items (images) the converter yields; null when unknown", min=0)
    count_exact: bool = option(False, "true when `count` is exact (a mismatch is then an error)")
    count_note: str = option("", "where the count comes from, or why it is unknown")
    checksums: dict[str, str] = option({}, "sha256 per relative path, only where published")
    checksums_note: str = option("not published", "where the checksums come from, or 'not published'")
    options: dict[str, Any] = option({}, "converter options, validated by the converter's own schema")

    def __post_init__(self) -> None:
        if not self.converter:
            raise ValueError(f"layout '{self.name}' names no converter")
        for path, digest in self.checksums.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise ValueError(f"checksum of '{path}' in layout '{self.name}' is not a sha256 hex digest: {digest!r}")


@dataclass
class GroupSpec:
    """How the group id (patient / video / sequence) of an item is derived, so grouped splits cannot leak.

    Attributes of an item (file name, columns of an index file, COCO image fields) are extended by the named
    groups of ``pattern`` (a regex on the file name) and, when ``frame_ranges`` is given, by ``range`` = the
    1-based index of the published frame range containing ``frame``; ``template`` then formats the group id.
    """

    kind: str = option("image", "what a group is; 'image' means every image is its own group", choices=GROUP_KINDS)
    derivation: str = option("", "human explanation of where group ids come from and how reliable they are")
    pattern: str | None = option(None, "regex applied to the image file name; named groups become attributes")
    template: str | None = option(None, "group id as a format string over attributes, e.g. '{patient}'")
    frame_ranges: list[tuple[int, int]] = option([], "published inclusive frame ranges, one per sequence")
    missing: str = option("error", "item whose group cannot be derived: 'error' or 'own' (its own group)",
                          choices=("error", "own"))

    def __post_init__(self) -> None:
        if self.kind != "image" and not self.template:
            raise ValueError(f"groups of kind '{self.kind}' need a template saying how the id is formed")
        for lo, hi in self.frame_ranges:
            if lo > hi:
                raise ValueError(f"frame range [{lo}, {hi}] is reversed")


@dataclass
class RecipeSpec:
    """The recipe we recommend for this dataset and what to watch out for."""

    recipe: str = option("", "recipe name under recipes/ (oct, endoscopy, thermal)")
    notes: str = option("", "recommended use: pretraining, fine-tuning task, split protocol, caveats")


@dataclass
class DatasetCard:
    """A public dataset dinomed knows how to verify and convert to a manifest."""

    name: str = option("", "card name = file stem; used on the command line")
    version: int = option(1, "card version; bump when conversion output changes", min=1)
    title: str = option("", "full dataset name")
    description: str = option("", "what it is: device, population, size")
    modality: str = option("oct", "imaging modality", choices=MODALITIES)
    tasks: list[str] = option([], "tasks the annotations support", choices=ANNOTATION_TASKS)
    labels: list[str] = option([], "label set (class names, mask classes or box categories)")
    licence: str = option("", "licence identifier or short terms")
    terms: str = option("", "use restrictions that go beyond the licence (research only, no redistribution)")
    citation: str = option("", "what to cite")
    source: SourceSpec = option(default_factory=SourceSpec)
    layouts: list[LayoutSpec] = option([], "accepted layouts, tried in order when --layout is not given")
    groups: GroupSpec = option(default_factory=GroupSpec)
    recipe: RecipeSpec = option(default_factory=RecipeSpec)

    def __post_init__(self) -> None:
        missing = [key for key in ("name", "title", "description", "licence", "citation") if not getattr(self, key)]
        if missing:
            raise ValueError(f"missing required keys: {', '.join(missing)}")
        if not self.source.page or not self.source.archive:
            raise ValueError("source.page and source.archive must name where users get the data")
        if not self.groups.derivation:
            raise ValueError("groups.derivation must explain where group ids come from")
        if not self.tasks:
            raise ValueError("tasks must list at least one task")
        if not self.layouts:
            raise ValueError("layouts must describe at least one accepted layout")
        names = [layout.name for layout in self.layouts]
        if len(set(names)) != len(names):
            raise ValueError(f"layout names must be unique, got {names}")

    def layout(self, name: str) -> LayoutSpec:
        """The layout called ``name``; the error lists the card's layouts."""
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise ValueError(f"card '{self.name}' has no layout '{name}'; layouts: {[l.name for l in self.layouts]}")


def cards_dir() -> Path:
    """Folder holding the cards: ``$DINOMED_CARDS``, else the cards shipped in the package (the repository's
    top-level ``datasets/`` links there)."""
    env = os.environ.get("DINOMED_CARDS")
    return Path(env) if env else Path(str(files("dinomed.catalogue") / "cards"))


def card_names(directory: Path | None = None) -> list[str]:
    """Names of all cards, sorted."""
    return sorted(p.stem for p in (directory or cards_dir()).glob("*.yaml"))


def load_card(name_or_path: str | Path, directory: Path | None = None) -> DatasetCard:
    """Load and validate one card by name (looked up in :func:`cards_dir`) or by path to its YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        folder = directory or cards_dir()
        path = folder / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown dataset '{name_or_path}'; known cards in {folder}: {card_names(folder)}")
    card = from_dict(DatasetCard, load_yaml(path), source=str(path))
    if card.name != path.stem:
        raise ConfigError(str(path), "name", f"must equal the file stem '{path.stem}', got '{card.name}'")
    for i, layout in enumerate(card.layouts):
        validate_options(layout.converter, layout.options, source=str(path), prefix=f"layouts[{i}].options")
    return card


def load_cards(directory: Path | None = None) -> list[DatasetCard]:
    """Every card in ``directory`` (default :func:`cards_dir`), validated."""
    folder = directory or cards_dir()
    return [load_card(folder / f"{name}.yaml") for name in card_names(folder)]
