"""Every card loads through the typed schema; unknown keys and options fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dinomed.catalogue.cards import card_names, cards_dir, load_card, load_cards
from dinomed.catalogue.layouts import layout_names
from dinomed.config import ConfigError

REQUIRED = {"kermany-oct2017", "octdl", "olives", "cvc-clinicdb", "kvasir-seg", "hamlyn", "hit-uav", "flir-adas",
            "llvip"}


def test_every_card_loads_and_the_catalogue_covers_the_issue() -> None:
    cards = load_cards()
    assert REQUIRED <= {c.name for c in cards}
    for card in cards:
        assert card.citation and card.licence and card.source.archive
        for layout in card.layouts:
            assert layout.converter in layout_names()
            assert layout.checksums or layout.checksums_note  # either values or a statement why there are none


@pytest.mark.parametrize("modality", ["oct", "endoscopy", "thermal"])
def test_each_modality_has_cards(modality: str) -> None:
    assert sum(c.modality == modality for c in load_cards()) >= 3


def _write_card(tmp_path: Path, edit) -> Path:  # noqa: ANN001 - callable editing the card dict
    data = yaml.safe_load((cards_dir() / "kvasir-seg.yaml").read_text())
    edit(data)
    path = tmp_path / "kvasir-seg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_top_level_key_names_file_and_key(tmp_path: Path) -> None:
    path = _write_card(tmp_path, lambda d: d.update(licence_url="x"))
    with pytest.raises(ConfigError, match=r"kvasir-seg.yaml: key 'licence_url': unknown key"):
        load_card(path)


def test_unknown_converter_option_names_the_key(tmp_path: Path) -> None:
    path = _write_card(tmp_path, lambda d: d["layouts"][0]["options"].update(image_folder="x"))
    with pytest.raises(ConfigError, match=r"layouts\[0\]\.options\.image_folder"):
        load_card(path)


def test_unknown_converter_is_reported(tmp_path: Path) -> None:
    path = _write_card(tmp_path, lambda d: d["layouts"][0].update(converter="zip-magic"))
    with pytest.raises(ConfigError, match="unknown layout converter 'zip-magic'"):
        load_card(path)


def test_invented_checksum_format_is_rejected(tmp_path: Path) -> None:
    path = _write_card(tmp_path, lambda d: d["layouts"][0].update(checksums={"a.jpg": "abc"}))
    with pytest.raises(ConfigError, match="not a sha256"):
        load_card(path)


def test_unknown_card_name_lists_known_cards() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*kvasir-seg"):
        load_card("nope")
    assert "hit-uav" in card_names()
