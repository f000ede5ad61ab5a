"""Dataset catalogue: cards for public datasets (top-level ``datasets/*.yaml``), ``prepare`` and ``check``.

    from dinomed.catalogue import load_card, prepare, check_manifest, resolve_prepared
    result = prepare("kermany-oct2017", "~/downloads/OCT2017-unpacked")
    check_manifest(result.manifest).ok
"""

from dinomed.catalogue.cards import DatasetCard, card_names, cards_dir, load_card, load_cards
from dinomed.catalogue.check import CheckReport, check_manifest
from dinomed.catalogue.prepare import PrepareResult, data_home, prepare, resolve_prepared
from dinomed.catalogue.verify import SourceError

__all__ = ["DatasetCard", "card_names", "cards_dir", "load_card", "load_cards", "CheckReport", "check_manifest",
           "PrepareResult", "data_home", "prepare", "resolve_prepared", "SourceError"]
