"""Group ids from file names, index columns and published frame ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomed.catalogue.cards import GroupSpec, load_card
from dinomed.catalogue.groups import GroupDeriver
from dinomed.catalogue.layouts import SourceItem


def _item(name: str, **attrs: str) -> SourceItem:
    return SourceItem(image=Path("x") / name, attrs=attrs)


def test_kermany_patient_from_file_name() -> None:
    derive = GroupDeriver(load_card("kermany-oct2017").groups)
    assert derive(_item("DRUSEN-95633-12.jpeg")) == "95633"
    assert derive(_item("CNV-unknown-octvision-archive.png", patient_id="")) is None  # own group, not a crash


@pytest.mark.parametrize(("frame", "sequence"), [(1, "seq1"), (25, "seq1"), (26, "seq2"), (205, "seq10"),
                                                 (206, "seq11"), (612, "seq29")])
def test_cvc_sequence_from_published_ranges(frame: int, sequence: str) -> None:
    derive = GroupDeriver(load_card("cvc-clinicdb").groups)
    assert derive(_item(f"{frame}.tif")) == sequence


def test_cvc_frame_outside_ranges_is_an_error() -> None:
    with pytest.raises(ValueError, match="613.tif: cannot derive the sequence id"):
        GroupDeriver(load_card("cvc-clinicdb").groups)(_item("613.tif"))


def test_hit_uav_session_from_name_and_coco_field() -> None:
    derive = GroupDeriver(load_card("hit-uav").groups)
    assert derive(_item("1_100_60_0_07012.jpg", date_captured="20210120")) == "scenario1-20210120"


def test_image_kind_has_no_group() -> None:
    assert GroupDeriver(GroupSpec(kind="image", derivation="none"))(_item("a.jpg")) is None
