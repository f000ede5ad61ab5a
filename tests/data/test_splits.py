"""Grouped splits never leak a group, keep the labelled subset inside train, and reload only onto the same data."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dinomed.data.config import DataConfig
from dinomed.data.readers import DataError
from dinomed.data.records import ImageDataset, Record
from dinomed.data.splits import Splits, make_splits, splits_for


class TableDataset(ImageDataset):
    """Records only (splits never touch pixels)."""

    def __init__(self, labels, groups):
        self.records = [Record(f"img{i}.png", label, group=g, meta={"key": f"img{i}.png"})
                        for i, (label, g) in enumerate(zip(labels, groups))]
        self.class_names = sorted({str(x) for x in labels if x is not None}) or None


def _random_dataset(rng: random.Random) -> TableDataset:
    n_groups, n_classes = rng.randint(3, 30), rng.randint(1, 5)
    labels, groups = [], []
    for g in range(n_groups):
        for _ in range(rng.randint(1, 8)):
            labels.append(rng.randrange(n_classes) if rng.random() > 0.05 else None)
            groups.append(f"patient{g}")
    return TableDataset(labels, groups)


def test_no_group_leaks_and_labelled_subset_inside_train():
    """A seeded loop over 300 random manifests (hypothesis is not installed in the project env)."""
    rng = random.Random(1234)
    for case in range(300):
        ds = _random_dataset(rng)
        val, test = rng.choice([0.0, 0.1, 0.2]), rng.choice([0.1, 0.25])
        splits = make_splits(ds, val=val, test=test, seed=case)
        parts = [set(splits[name]) for name in ("train", "val", "test")]
        assert sorted(i for part in parts for i in part) == list(range(len(ds))), case
        groups = ds.groups()
        owners = [{groups[i] for i in part} for part in parts]
        assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2]), case
        assert all(parts[k] for k, f in enumerate((1 - val - test, val, test)) if f > 0), case
        labelled_train = [i for i in splits["train"] if ds.records[i].label is not None]
        if labelled_train:
            budget = rng.randint(1, len(labelled_train))
            chosen = make_splits(ds, val=val, test=test, labelled=budget, seed=case)
            assert chosen["train"] == splits["train"]  # the subset does not move the split
            assert set(chosen["labelled"]) <= set(splits["train"]) and len(chosen["labelled"]) == budget, case
            assert all(ds.records[i].label is not None for i in chosen["labelled"])


def test_seeded_and_stratified():
    labels = [c for c in range(3) for _ in range(40)]
    groups = [f"p{i // 4}" for i in range(120)]  # 30 patients of 4 images, one class each
    ds = TableDataset(labels, groups)
    a, b = make_splits(ds, labelled=9, seed=7), make_splits(ds, labelled=9, seed=7)
    assert dict(a) == dict(b) and dict(a) != dict(make_splits(ds, labelled=9, seed=8))
    for name in ("val", "test", "labelled"):
        assert set(Counter(labels[i] for i in a[name])) == {0, 1, 2}, name
    assert Counter(labels[i] for i in a["labelled"]) == {0: 3, 1: 3, 2: 3}
    assert len(a["test"]) == pytest.approx(24, abs=4) and len(a["val"]) == pytest.approx(18, abs=4)


def test_labelled_fraction_per_class():
    ds = TableDataset([0] * 50 + [1] * 10, [f"p{i}" for i in range(60)])
    splits = make_splits(ds, val=0.0, test=0.0, labelled=0.2)
    assert Counter(ds.records[i].label for i in splits["labelled"]) == {0: 10, 1: 2}


def test_mask_only_dataset_budget_counts_masks():
    ds = TableDataset([None] * 20, [f"p{i // 2}" for i in range(20)])
    for i, record in enumerate(ds.records):
        record.mask = f"mask{i}.png" if i % 4 else None
    splits = make_splits(ds, labelled=3, seed=0)
    assert len(splits["labelled"]) == 3 and all(ds.records[i].mask for i in splits["labelled"])
    assert set(splits["labelled"]) <= set(splits["train"])


def test_budget_errors():
    ds = TableDataset([0, 1] * 10, [f"p{i}" for i in range(20)])
    with pytest.raises(ValueError, match="larger than the .* labelled images of the train split"):
        make_splits(ds, labelled=15)
    with pytest.raises(ValueError, match="positive"):
        make_splits(ds, labelled=0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        make_splits(ds, labelled=1.5)


def test_more_splits_than_groups():
    ds = TableDataset([0, 1, 0, 1], ["a", "a", "b", "b"])
    with pytest.raises(ValueError, match="2 group\\(s\\) cannot fill 3 splits"):
        make_splits(ds, val=0.2, test=0.2)
    assert make_splits(ds, val=0.0, test=0.5)["test"] in ([0, 1], [2, 3])


def test_save_load_round_trip_and_mismatch(tmp_path):
    ds = TableDataset([0, 1] * 10, [f"p{i // 2}" for i in range(20)])
    splits = make_splits(ds, labelled=4, seed=3)
    path = splits.save(tmp_path / "splits.json")
    loaded = Splits.load(path, ds)
    assert dict(loaded) == dict(splits) and loaded.params == {"val": 0.15, "test": 0.2, "labelled": 4, "seed": 3}
    other = TableDataset([0, 1] * 10, [f"p{i // 2}" for i in range(20)])
    other.records[5].meta["key"] = "renamed.png"
    with pytest.raises(DataError, match="item 5 is 'img5.png' in the split file but 'renamed.png'") as err:
        Splits.load(path, other)
    assert err.value.path == str(path)
    with pytest.raises(DataError, match="lists 20 items but the dataset has 19"):
        Splits.load(path, TableDataset([0] * 19, [f"p{i}" for i in range(19)]))
    regrouped = TableDataset([0, 1] * 10, [f"q{i // 2}" for i in range(20)])
    with pytest.raises(DataError, match="has group 'p0' in the split file but 'q0' now"):
        Splits.load(path, regrouped)


def test_splits_for_writes_then_reuses(tmp_path):
    ds = TableDataset([0, 1] * 10, [f"p{i // 2}" for i in range(20)])
    cfg = DataConfig(split_file=str(tmp_path / "s.json"), labelled=4, split_seed=1)
    first = splits_for(ds, cfg)
    assert (tmp_path / "s.json").is_file() and dict(splits_for(ds, cfg)) == dict(first)
    cfg.split_seed = 2
    with pytest.raises(DataError, match="split file was made with"):
        splits_for(ds, cfg)
