"""Picture helpers: which samples the attention / PCA figures show."""

from __future__ import annotations

from dinomed.report.visuals import spread_indices


def test_spread_indices_cover_the_dataset_without_repeats() -> None:
    assert spread_indices(10, 4) == [0, 2, 5, 7]  # frames of a video set come from across it, not one scene
    assert spread_indices(3, 8) == [0, 1, 2]
    assert spread_indices(0, 4) == []
