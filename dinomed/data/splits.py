"""Train/val/test splits and a label-scarce labelled subset, saved to a reusable JSON file.

When the data carries its own split (a manifest's ``split`` column, a COCO image's ``split`` field, the split a
prepared dataset keeps), it is used as it is: an official benchmark split, a second hospital or a later period
held out for testing must never be trained on. ``data.val_fraction`` / ``data.test_fraction`` are then ignored,
except that a split without val rows gets its val part drawn from its train part (whole groups,
``data.val_fraction`` of the train images), since early stopping needs one. A group (patient / sequence) in two
parts is an error naming it, or a warning with ``data.allow_group_leaks: true``.

Otherwise images of one patient (OCT), video sequence (endoscopy) or volume are strongly correlated; letting them
span train and test inflates every metric (patient-level leakage, see Yagis et al., Sci. Rep. 11, 22544, 2021). So
whole groups are assigned to splits, stratified by class as far as whole groups allow.

Either way the labelled subset (the few labels a clinic can afford) is drawn from the train split only.

Example::

    splits = make_splits(dataset, val=0.15, test=0.2, labelled=50, seed=0)
    splits.save("splits.json")                      # later runs: Splits.load("splits.json", dataset)
    train_labelled = dataset.subset(splits["labelled"])
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dinomed.data.config import DataConfig
from dinomed.files import atomic_write
from dinomed.data.readers import DataError
from dinomed.data.records import SPLIT_NAMES, ImageDataset

FORMAT = "dinomed-splits/1"
SPLITS_FILE = "splits.json"  # the split a run used, in its run directory
log = logging.getLogger("dinomed.data")


@dataclass
class Splits(Mapping[str, list[int]]):
    """Dataset indices per split (``train``, ``val``, ``test``) and the ``labelled`` subset of train.

    Reads as a mapping (``splits["val"]``); ``paths``/``groups`` are the dataset's item keys and groups, kept so a
    saved file can be checked against the dataset it is loaded for.
    """

    train: list[int]
    val: list[int]
    test: list[int]
    labelled: list[int]
    paths: list[str] = field(repr=False)
    groups: list[str] = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[int]:
        if name not in (*SPLIT_NAMES, "labelled"):
            raise KeyError(f"unknown split '{name}'; valid splits are {[*SPLIT_NAMES, 'labelled']}")
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter((*SPLIT_NAMES, "labelled"))

    def __len__(self) -> int:
        return len(SPLIT_NAMES) + 1

    @property
    def given(self) -> bool:
        """Whether the parts are the data's own split (else dinomed drew grouped splits)."""
        return bool(self.params.get("given"))

    def describe(self) -> str:
        """One line for the console and the report: where the split came from and its sizes."""
        sizes = (f"train {len(self.train)} (labelled {len(self.labelled)}), val {len(self.val)}, "
                 f"test {len(self.test)} images")
        if not self.given:
            return f"Splits (grouped, drawn by dinomed): {sizes}."
        val = " (val drawn from its train part by whole groups)" if self.params.get("val_from_train") else ""
        return (f"Splits (the data's own split{val}; data.val_fraction / data.test_fraction ignored): {sizes}.")

    def save(self, path: str | Path) -> Path:
        """Write indices, item paths and groups and the parameters as JSON."""
        items = [{"index": i, "path": p, "group": g} for i, (p, g) in enumerate(zip(self.paths, self.groups))]
        data = {"format": FORMAT, "params": self.params, "splits": {name: self[name] for name in self}, "items": items}
        return atomic_write(path, json.dumps(data, indent=1))

    @classmethod
    def read(cls, path: str | Path) -> Splits:
        """Read a split file as written (see :meth:`load` to check it against a dataset)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(path, "split file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(path, f"split file is not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(path, f"not a dinomed split file (expected format '{FORMAT}')")
        paths, groups = [item["path"] for item in data["items"]], [item["group"] for item in data["items"]]
        return cls(**{name: list(data["splits"][name]) for name in (*SPLIT_NAMES, "labelled")},
                   paths=paths, groups=groups, params=data["params"])

    @classmethod
    def load(cls, path: str | Path, dataset: ImageDataset) -> Splits:
        """Read a split file, checking it lists exactly ``dataset``'s items (same paths and groups, same order)."""
        splits = cls.read(path)
        _check_matches(Path(path), splits.paths, splits.groups, dataset)
        return splits


def _check_matches(path: Path, paths: list[str], groups: list[str], dataset: ImageDataset) -> None:
    current = [r.key for r in dataset.records]
    if len(paths) != len(current):
        raise DataError(path, f"split file lists {len(paths)} items but the dataset has {len(current)}; "
                        "the data changed — delete the split file to make new splits")
    for i, (saved, now) in enumerate(zip(paths, current)):
        if saved != now:
            raise DataError(path, f"item {i} is '{saved}' in the split file but '{now}' in the dataset; "
                            "the data changed — delete the split file to make new splits")
    for i, (saved, now) in enumerate(zip(groups, dataset.groups())):
        if saved != now:
            raise DataError(path, f"item {i} ({paths[i]}) has group '{saved}' in the split file but '{now}' now")


def _assign_groups(members: dict[str, list[int]], labels: list[Any], fractions: dict[str, float],
                   rng: random.Random) -> dict[str, list[str]]:
    """Greedy stratified assignment: largest groups first, each to the split where it least increases the squared
    gap to the target class counts (per class, relative) and split size."""
    totals = Counter(labels)
    wanted = [name for name in SPLIT_NAMES if fractions[name] > 0]
    counts = {name: Counter() for name in wanted}
    sizes = dict.fromkeys(wanted, 0)
    order = list(members)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # stable: equal sizes keep the seeded order
    assigned: dict[str, list[str]] = {name: [] for name in wanted}
    n = len(labels)

    def gap_increase(name: str, add: Counter, size: int) -> float:
        grow = lambda have, extra, total: ((have + extra - fractions[name] * total) ** 2  # noqa: E731
                                           - (have - fractions[name] * total) ** 2) / total**2
        return sum(grow(counts[name][c], k, totals[c]) for c, k in add.items()) + grow(sizes[name], size, n)

    for group in order:
        group_counts = Counter(labels[i] for i in members[group])
        best = min(wanted, key=lambda name: gap_increase(name, group_counts, len(members[group])))
        assigned[best].append(group)
        counts[best].update(group_counts)
        sizes[best] += len(members[group])
    for name in wanted:  # every asked-for split gets at least one group
        if not assigned[name]:
            donor = max(wanted, key=lambda s: len(assigned[s]))
            smallest = min(assigned[donor], key=lambda g: len(members[g]))
            assigned[donor].remove(smallest)
            assigned[name].append(smallest)
    return assigned


def _per_class_budget(available: dict[Any, list[int]], labelled: int | float) -> dict[Any, int]:
    """Images to label per class: a fraction of each class, or N spread in proportion (>= 1 each when N allows)."""
    if isinstance(labelled, float):
        return {c: min(len(idx), max(1, round(labelled * len(idx)))) for c, idx in available.items()}
    base = {c: 1 if labelled >= len(available) else 0 for c in available}
    rest = labelled - sum(base.values())
    room = {c: len(idx) - base[c] for c, idx in available.items()}
    shares = {c: rest * room[c] / sum(room.values()) for c in available}
    budget = {c: base[c] + int(shares[c]) for c in available}
    by_remainder = sorted(available, key=lambda c: shares[c] - int(shares[c]), reverse=True)
    for c in by_remainder[: labelled - sum(budget.values())]:
        budget[c] += 1
    return budget


def _annotated(dataset: ImageDataset) -> list[bool]:
    """Whether each item has a target: a class label or, for segmentation / depth sets, a mask or depth map."""
    return [r.label is not None or r.mask is not None or r.depth is not None for r in dataset.records]


def _labelled_subset(train: list[int], labels: list[Any], annotated: list[bool], labelled: int | float | None,
                     rng: random.Random) -> list[int]:
    candidates = [i for i in train if annotated[i]]
    if labelled is None:
        return sorted(candidates)
    if isinstance(labelled, bool) or labelled <= 0:
        raise ValueError(f"labelled budget must be a positive count or a fraction in (0, 1], got {labelled!r}")
    if isinstance(labelled, float) and labelled > 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {labelled}; give an integer for a count of images")
    if isinstance(labelled, int) and labelled > len(candidates):
        raise ValueError(f"labelled budget {labelled} is larger than the {len(candidates)} labelled images of the "
                         "train split (with a label, mask or depth); lower it or the val/test fractions")
    by_class: dict[Any, list[int]] = {}
    for i in candidates:
        by_class.setdefault(labels[i], []).append(i)
    if not by_class:
        raise ValueError("the train split has no image with a label, mask or depth to draw the labelled subset from")
    budget = _per_class_budget(by_class, labelled)
    return sorted(i for c in sorted(by_class, key=str) for i in rng.sample(by_class[c], budget[c]))


def make_splits(
    dataset: ImageDataset, val: float = 0.15, test: float = 0.2, labelled: int | float | None = None, seed: int = 0
) -> Splits:
    """Grouped, class-stratified train/val/test split of ``dataset`` plus a labelled subset of train.

    Args:
        dataset: any :class:`ImageDataset`; its ``groups()`` (patient / sequence / volume) are never split.
        val, test: fractions of images (approximate: whole groups move together); 0 leaves a split empty.
        labelled: an int N = N labelled train images spread over classes in proportion (>= 1 per class when N
            allows), a float in (0, 1] = that fraction of each class, ``None`` = every labelled train image.
            "Labelled" means a class label, or a mask / depth map for segmentation and depth sets.
        seed: the result is a pure function of the dataset's labels/groups and the arguments.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test must be fractions in [0, 1) leaving a train split, got val={val}, test={test}")
    labels, groups = dataset.labels(), dataset.groups()
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    fractions = {"train": 1 - val - test, "val": val, "test": test}
    wanted = [name for name in SPLIT_NAMES if fractions[name] > 0]
    if len(members) < len(wanted):
        raise ValueError(f"{len(members)} group(s) cannot fill {len(wanted)} splits ({', '.join(wanted)}): a group "
                         "(patient / sequence) never spans two splits; set val or test to 0 or add data")
    rng = random.Random(seed)
    assigned = _assign_groups(members, labels, fractions, rng)
    parts = {name: sorted(i for g in assigned.get(name, []) for i in members[g]) for name in SPLIT_NAMES}
    chosen = _labelled_subset(parts["train"], labels, _annotated(dataset), labelled, rng)
    params = {"val": val, "test": test, "labelled": labelled, "seed": seed}
    return Splits(**parts, labelled=chosen, paths=[r.key for r in dataset.records], groups=groups, params=params)


def given_parts(dataset: ImageDataset, allow_group_leaks: bool = False) -> dict[str, list[int]] | None:
    """Indices per part of the data's own split, ``None`` when it carries none; a group in two parts fails."""
    values = [r.split for r in dataset.records]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [dataset.records[i].key for i, v in enumerate(values) if v is None]
        raise DataError(dataset.records[0].image, f"{len(missing)} item(s) have no split while others do "
                        f"(first: {missing[:3]}); every item needs train, val or test")
    parts_of: dict[str, set[str]] = {}
    for group, value in zip(dataset.groups(), values):
        parts_of.setdefault(group, set()).add(value)
    leaks = {g: sorted(p) for g, p in parts_of.items() if len(p) > 1}
    if leaks:
        group, parts = next(iter(leaks.items()))
        rows = [dataset.records[i].meta.get("row", dataset.records[i].key)
                for i, g in enumerate(dataset.groups()) if g == group][:6]
        message = (f"group '{group}' appears in {' and '.join(parts)} (rows {rows})"
                   f"{f' and {len(leaks) - 1} more group(s) cross parts' if len(leaks) > 1 else ''}: its images "
                   "are correlated, so the test score would be inflated")
        if not allow_group_leaks:
            raise DataError(dataset.records[0].image, f"the data's own split leaks: {message}; fix the split, or set "
                            "data.allow_group_leaks: true to use it anyway")
        log.warning("the data's own split leaks (data.allow_group_leaks: true): %s", message)
    return {name: [i for i, v in enumerate(values) if v == name] for name in SPLIT_NAMES}


def _params(cfg: DataConfig, given: dict[str, list[int]] | None) -> dict[str, Any]:
    """What a split depends on besides the data (checked when a split file is reused)."""
    if given is None:
        return {"val": cfg.val_fraction, "test": cfg.test_fraction, "labelled": cfg.labelled, "seed": cfg.split_seed}
    val_from_train = not given["val"] and cfg.val_fraction > 0
    return {"given": True, "val_from_train": val_from_train, "val": cfg.val_fraction if val_from_train else None,
            "labelled": cfg.labelled, "seed": cfg.split_seed}


def _given_splits(dataset: ImageDataset, parts: dict[str, list[int]], cfg: DataConfig) -> Splits:
    """The data's own split; val drawn from train by whole groups when it has none; the labelled subset."""
    rng = random.Random(cfg.split_seed)
    labels, params = dataset.labels(), _params(cfg, parts)
    if params["val_from_train"]:
        train, groups = parts["train"], dataset.groups()
        members: dict[str, list[int]] = {}
        for local, i in enumerate(train):
            members.setdefault(groups[i], []).append(local)
        if len(members) < 2:
            raise DataError(dataset.records[0].image, "the data's own split has no val part and its train part holds "
                            "a single group to draw one from; add val rows, or set data.val_fraction: 0")
        fractions = {"train": 1 - cfg.val_fraction, "val": cfg.val_fraction, "test": 0.0}
        drawn = _assign_groups(members, [labels[i] for i in train], fractions, rng)
        parts = {**parts, **{name: sorted(train[j] for g in drawn[name] for j in members[g]) for name in ("train", "val")}}
    chosen = _labelled_subset(parts["train"], labels, _annotated(dataset), cfg.labelled, rng)
    return Splits(**parts, labelled=chosen, paths=[r.key for r in dataset.records], groups=dataset.groups(),
                  params=params)


def splits_for(dataset: ImageDataset, cfg: DataConfig) -> Splits:
    """The recipe's splits: the data's own split when it carries one, else grouped ones; ``cfg.split_file`` is
    reused when it exists (checked against the data and the settings), else written."""
    given = given_parts(dataset, cfg.allow_group_leaks)
    params = _params(cfg, given)
    if cfg.split_file and Path(cfg.split_file).is_file():
        splits = Splits.load(cfg.split_file, dataset)
        if splits.params != params:
            raise DataError(cfg.split_file, f"split file was made with {splits.params} but the recipe asks for {params}; "
                            "delete the file or point data.split_file elsewhere")
        return splits
    if given is not None:
        splits = _given_splits(dataset, given, cfg)
    else:
        splits = make_splits(dataset, cfg.val_fraction, cfg.test_fraction, cfg.labelled, cfg.split_seed)
    if cfg.split_file:
        splits.save(cfg.split_file)
    return splits


def pretraining_subset(dataset: ImageDataset, cfg: DataConfig) -> tuple[ImageDataset, Splits | None]:
    """The images pretraining reads: the ``cfg.pretrain_splits`` parts (default train + val) when the data carries
    its own split, so a held-out test part stays unseen; every image otherwise (there is no test part yet).

    Returns the subset and the split it came from (``None`` for every image).
    """
    if given_parts(dataset, cfg.allow_group_leaks) is None:
        return dataset, None
    splits = splits_for(dataset, replace(cfg, labelled=None, split_file=None))
    indices = sorted(i for name in cfg.pretrain_splits for i in splits[name])
    if not indices:
        raise DataError(dataset.records[0].image, f"the data's own split has no image in data.pretrain_splits "
                        f"{cfg.pretrain_splits}; choose parts that hold images")
    return dataset.subset(indices), splits


def grouped_folds(groups: list[str], k: int, seed: int = 0) -> list[int]:
    """Fold index (0..k-1) of every item, whole groups per fold (scikit-learn's ``GroupKFold`` assignment).

    Cross-validation inside a labelled subset must keep a patient / sequence in one fold for the same leakage
    reason as :func:`make_splits`. Groups go largest first (seeded order among equal sizes) to the fold holding
    the fewest items so far, which balances fold sizes.
    """
    members: dict[str, int] = Counter(groups)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if k > len(members):
        raise ValueError(f"{k} folds need at least {k} groups (patients / sequences), but the labelled subset has "
                         f"{len(members)}; lower the folds (tune.folds) or label more groups")
    order = sorted(members)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -members[g])  # stable: equal sizes keep the seeded order
    sizes, fold_of = [0] * k, {}
    for group in order:
        fold = min(range(k), key=lambda f: sizes[f])
        fold_of[group] = fold
        sizes[fold] += members[group]
    return [fold_of[g] for g in groups]
