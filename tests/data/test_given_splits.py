"""A data set's own train/val/test split is used as it is, by every command, and misuse fails naming the rows."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console

import dinomed
from dinomed.catalogue import check_manifest
from dinomed.data.config import DataConfig
from dinomed.data.datasets import ManifestDataset
from dinomed.data.phantoms import write_phantom_dataset
from dinomed.data.readers import DataError
from dinomed.data.records import canonical_split
from dinomed.data.splits import pretraining_subset, splits_for
from dinomed.tuning.objective import fold_splits, search_splits

QUIET = Console(quiet=True)
TINY = {"model.arch": "vit_tiny_patch16_224", "finetune.image_size": 32, "finetune.epochs": 1, "finetune.batch_size": 4,
        "data.num_workers": 0, "train.num_threads": 1}
PARTS = {"train": "training", "val": "Validation", "test": "holdout"}  # synonyms, any case


def _with_split(source: Path, out: Path, split_of: dict[str, str], rows: slice = slice(None)) -> Path:
    """The phantom manifest plus a split column assigned per group."""
    with source.open(newline="") as handle:
        table = list(csv.DictReader(handle))[rows]
    for row in table:
        row["split"] = split_of.get(row["group"], "")
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return out


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_dataset("endoscopy", tmp_path_factory.mktemp("endo"), 80, size=(32, 32))


@pytest.fixture()
def manifest(phantom: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Groups 0-5 train, 6-7 val, 8-9 test (8 frames each)."""
    with phantom.open(newline="") as handle:
        groups = sorted({row["group"] for row in csv.DictReader(handle)})
    split_of = {g: PARTS["train" if i < 6 else "val" if i < 8 else "test"] for i, g in enumerate(groups)}
    return _with_split(phantom, phantom.parent / f"split-{tmp_path.name}.csv", split_of), split_of


def _expected(path: Path) -> dict[str, list[int]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: [i for i, r in enumerate(rows) if canonical_split(r["split"]) == name] for name in ("train", "val", "test")}


def _data(path: Path, **extra) -> dict:
    return {"data.source": "manifest", "data.manifest": str(path), "data.val_fraction": 0.4,
            "data.test_fraction": 0.4, **extra}  # fractions the given split must override


def test_the_data_split_is_used_by_finetune_eval_tune_and_pretrain(manifest, tmp_path) -> None:
    path, _ = manifest
    expected = _expected(path)
    run = dinomed.finetune("endoscopy", task="seg", labels=8, quick=True, out=tmp_path / "seg", console=QUIET,
                           overrides={**TINY, **_data(path)})
    saved = json.loads((run.run_dir / "splits.json").read_text())
    assert {k: saved["splits"][k] for k in expected} == expected and saved["params"]["given"]
    assert set(saved["splits"]["labelled"]) <= set(expected["train"]) and len(saved["splits"]["labelled"]) == 8
    recipe = dinomed.load_recipe("endoscopy", overrides={**TINY, **_data(path), "data.labelled": 16})
    splits = search_splits(recipe)
    assert [splits[k] for k in expected] == list(expected.values())
    for fold in fold_splits(splits, 2, 0):  # tuning's CV folds stay inside the labelled train images
        assert set(fold.train) | set(fold.val) <= set(expected["train"]) and not fold.test
    dataset = ManifestDataset(path, recipe.data, "endoscopy")
    subset, used = pretraining_subset(dataset, recipe.data)
    assert len(subset) == len(expected["train"]) + len(expected["val"])
    assert {r.key for r in subset.records}.isdisjoint({dataset.records[i].key for i in expected["test"]})


def test_eval_reports_the_given_split(tmp_path, phantom) -> None:
    """kNN on the OCT phantom with a published-style split (no val rows: val comes from train, by whole groups)."""
    oct_manifest = write_phantom_dataset("oct", tmp_path / "oct", 64, size=(32, 32))
    with oct_manifest.open(newline="") as handle:
        groups = sorted({row["group"] for row in csv.DictReader(handle)})
    path = _with_split(oct_manifest, oct_manifest.parent / "split.csv",
                       {g: "train" if i < 6 else "test" for i, g in enumerate(groups)})
    result = dinomed.knn_eval("oct", backbone="random", console=QUIET, overrides={
        **_data(path, **{"data.val_fraction": 0.25}), "augment.global_size": 32, "model.arch": "vit_tiny_patch16_224",
        "eval.cache_dir": str(tmp_path / "cache")})
    assert result.split_sizes["test"] == 16 and result.split_sizes["val"] == 8 and result.split_sizes["train"] == 40
    cfg = DataConfig(source="manifest", manifest=str(path), val_fraction=0.25)
    splits = splits_for(ManifestDataset(path, cfg, "oct"), cfg)
    assert splits.params["val_from_train"] and "val drawn from its train part" in splits.describe()
    assert {splits.groups[i] for i in splits.val}.isdisjoint({splits.groups[i] for i in splits.train})


def test_pretraining_reads_train_and_val_only_and_says_so(manifest, tmp_path) -> None:
    path, _ = manifest
    expected = _expected(path)
    console = Console(record=True, width=200)
    run = dinomed.pretrain("endoscopy", quick=True, console=console, overrides={
        **_data(path), "train.max_steps": 1, "train.batch_size": 4, "augment.global_size": 32,
        "augment.local_size": 16, "augment.local_crops": 2, "data.num_workers": 0, "train.probe_every": 0,
        "train.output_dir": str(tmp_path), "train.run_name": "pre"})
    assert "Pretraining on the train + val part(s) of the data's own split: 64 images; held out: test (16)" \
        in console.export_text()
    saved = json.loads((run.run_dir / "splits.json").read_text())
    assert saved["splits"]["test"] == expected["test"]


def test_a_group_in_two_parts_is_an_error_or_with_leave_a_warning(phantom, tmp_path, caplog) -> None:
    with phantom.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    leaky = {rows[0]["group"]: "train"}
    path = _with_split(phantom, phantom.parent / f"leak-{tmp_path.name}.csv", leaky, slice(0, 16))
    table = list(csv.DictReader(path.open(newline="")))
    table[3]["split"] = "test"  # one frame of the first sequence in test
    table[8:] = [{**r, "split": "val"} for r in table[8:]]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    cfg = DataConfig(source="manifest", manifest=str(path))
    dataset = ManifestDataset(path, cfg, "endoscopy")
    with pytest.raises(DataError, match=rf"group '{rows[0]['group']}' appears in test and train \(rows \[1, 2, 3, 4"):
        splits_for(dataset, cfg)
    with caplog.at_level(logging.WARNING, logger="dinomed.data"):
        splits = splits_for(dataset, DataConfig(source="manifest", manifest=str(path), allow_group_leaks=True))
    assert splits.test == [3] and "leaks (data.allow_group_leaks: true)" in caplog.text


@pytest.mark.parametrize("value,message", [("", r"is empty in row\(s\) 2"), ("tst", "row 2 has 'tst'; expected train")])
def test_empty_and_unknown_split_values_name_the_rows(phantom, tmp_path, value, message) -> None:
    path = _with_split(phantom, phantom.parent / f"bad-{tmp_path.name}.csv", {}, slice(0, 4))
    table = [{**r, "split": "train"} for r in csv.DictReader(path.open(newline=""))]
    table[1]["split"] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    with pytest.raises(DataError, match=message):
        ManifestDataset(path, DataConfig(source="manifest", manifest=str(path)), "endoscopy")
    report = check_manifest(path, progress=False)  # `datasets check` flags what training refuses
    assert not report.ok and report.bad_splits[0]["row"] == "2"


def test_datasets_check_reports_the_given_split(manifest) -> None:
    path, _ = manifest
    report = check_manifest(path, progress=False)
    assert not report.bad_splits and not report.groups_crossing  # synonyms are read as training reads them
    assert set(report.class_balance) == {"train", "val", "test"}


def test_a_coco_split_field_is_honoured(tmp_path) -> None:
    from PIL import Image

    images, annotations = [], []
    for i in range(6):
        Image.new("L", (32, 32), 30 * i).save(tmp_path / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 32, "height": 32,
                       "split": ["train", "train", "train", "val", "test", "test"][i]})
        annotations.append({"id": i, "image_id": i, "category_id": i % 2, "bbox": [2, 2, 20, 20]})
    coco = tmp_path / "annotations.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}))
    cfg = DataConfig(source="coco", annotations=str(coco))
    from dinomed.data.datasets import CocoCropDataset

    splits = splits_for(CocoCropDataset(coco, cfg, "thermal"), cfg)
    assert (splits.train, splits.val, splits.test) == ([0, 1, 2], [3], [4, 5])
    images[2].pop("split")
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}))
    with pytest.raises(DataError, match="image id 2 .* has split ''; expected train, val or test"):
        CocoCropDataset(coco, cfg, "thermal")
