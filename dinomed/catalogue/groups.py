"""Group ids (patient / video / sequence) from a card's :class:`GroupSpec` and an item's attributes.

Grouped splits are the point: images of one patient or one video must never sit in two splits, or a model is
scored on near-copies of its training data (Kermany's OCT2017 test set shares patients with train).

    derive = GroupDeriver(card.groups)
    derive(item)   # '1016042' for OCT2017/train/CNV/CNV-1016042-1.jpeg
"""

from __future__ import annotations

import re
from bisect import bisect_right

from dinomed.catalogue.cards import GroupSpec
from dinomed.catalogue.layouts import SourceItem


class GroupDeriver:
    """Callable returning the group id of an item, or ``None`` (own group) when ``missing: own`` allows it."""

    def __init__(self, spec: GroupSpec) -> None:
        self.spec = spec
        self.pattern = re.compile(spec.pattern) if spec.pattern else None
        self.starts = [lo for lo, _ in spec.frame_ranges]

    def attributes(self, item: SourceItem) -> dict[str, str]:
        """Item attributes extended by the pattern's named groups and the frame's published range."""
        attrs = dict(item.attrs)
        if self.pattern is not None:
            match = self.pattern.search(item.image.name)
            if match is not None:
                attrs.update({k: v for k, v in match.groupdict().items() if v is not None})
        if self.spec.frame_ranges and attrs.get("frame", "").strip().isdigit():
            frame = int(attrs["frame"])
            i = bisect_right(self.starts, frame) - 1
            if i >= 0 and frame <= self.spec.frame_ranges[i][1]:
                attrs["range"] = str(i + 1)
        return attrs

    def __call__(self, item: SourceItem) -> str | None:
        if self.spec.kind == "image":
            return None
        attrs = self.attributes(item)
        try:
            group = self.spec.template.format(**attrs)  # type: ignore[union-attr]  # template required by schema
        except (KeyError, IndexError) as err:
            group = None
            reason = f"attribute {err} not found (attributes: {sorted(attrs)})"
        else:
            reason = "the derived id is empty"
        if group:
            return group
        if self.spec.missing == "own":
            return None
        raise ValueError(f"{item.image}: cannot derive the {self.spec.kind} id from template "
                         f"'{self.spec.template}': {reason}; fix groups in the card or set groups.missing: own")
