"""prepare on generated copies of every supported layout, and every kind of bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinomed.catalogue import SourceError, load_card, prepare, resolve_prepared
from tests.catalogue.conftest import MIMICS, Mimic, tree_digest, write_image


def _prepare_mimic(key: str, tmp_path: Path, **kwargs) -> tuple[Mimic, object, Path]:  # noqa: ANN003
    source = tmp_path / "src"
    mimic = MIMICS[key](source)
    card = load_card(mimic.card)
    card.layout(mimic.layout).count = None  # the mimic holds a handful of files, not the published count
    return mimic, prepare(card, source, tmp_path / "out", progress=False, **kwargs), source


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("key", sorted(MIMICS))
def test_prepare_every_layout(key: str, tmp_path: Path) -> None:
    mimic, result, _ = _prepare_mimic(key, tmp_path)
    rows = _rows(result.manifest)
    assert len(rows) == mimic.images == result.summary["images"]
    assert len({r["group"] for r in rows if r["group"]}) == mimic.groups == result.summary["groups"]
    assert result.summary["card"] == mimic.card and result.summary["layout"] == mimic.layout
    for row in rows:  # every path resolves relative to the manifest folder
        for column in ("image", "mask", "depth"):
            assert not row[column] or (result.out / row[column]).is_file(), row
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_masks_become_class_indices(tmp_path: Path) -> None:
    _, result, _ = _prepare_mimic("cvc", tmp_path)
    row = _rows(result.manifest)[0]
    mask = np.asarray(Image.open(result.out / row["mask"]))
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert row["image"].endswith(".png")  # TIFF frames are converted, JPEG/PNG are referenced in place


def test_depth_becomes_float_metres(tmp_path: Path) -> None:
    _, result, _ = _prepare_mimic("hamlyn", tmp_path)
    row = _rows(result.manifest)[1]
    depth = np.load(result.out / row["depth"])
    assert depth.dtype == np.float32 and np.allclose(depth, 0.051)  # 51 mm


def test_boxes_are_written_as_coco(tmp_path: Path) -> None:
    _, result, _ = _prepare_mimic("llvip", tmp_path)
    coco = json.loads((result.out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["person"]
    assert coco["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    assert all((result.out / im["file_name"]).is_file() for im in coco["images"])


def test_leaky_published_split_is_dropped_unless_kept(tmp_path: Path) -> None:
    _, result, _ = _prepare_mimic("kermany", tmp_path)
    assert "split" not in _rows(result.manifest)[0]
    assert result.summary["splits"]["groups_crossing"] == 2
    assert any("published split leaks" in w for w in result.warnings)
    result = prepare(load_card("kermany-oct2017"), tmp_path / "src", tmp_path / "out", split_policy="keep",
                     progress=False)
    assert {r["split"] for r in _rows(result.manifest)} == {"train", "test"}


def test_group_disjoint_split_is_kept(tmp_path: Path) -> None:
    _, result, _ = _prepare_mimic("flir", tmp_path)
    assert {r["split"] for r in _rows(result.manifest)} == {"train", "val", "test"}


def test_a_prepared_dataset_split_is_honoured_by_training(tmp_path: Path) -> None:
    """The split `prepare` keeps is the split fine-tuning, evaluation and pretraining use."""
    from dinomed.data.datasets import build_dataset
    from dinomed.data.splits import splits_for
    from dinomed.recipe import load_recipe

    _, result, _ = _prepare_mimic("flir", tmp_path)
    recipe = load_recipe("thermal", overrides=["data.source=coco", f"data.annotations={result.out / 'annotations.json'}"])
    dataset = build_dataset(recipe.data, recipe.modality)
    splits = splits_for(dataset, recipe.data)
    written = {Path(r["image"]).name: r["split"] for r in _rows(result.manifest)}
    assert splits.given and all(splits[name] for name in ("train", "val", "test"))
    for name in ("train", "val", "test"):
        assert {written[Path(dataset.records[i].image).name] for i in splits[name]} == {name}


def test_idempotent_and_source_untouched(tmp_path: Path) -> None:
    source = tmp_path / "src"
    MIMICS["cvc"](source)
    before = tree_digest(source)
    card = load_card("cvc-clinicdb")
    card.layouts[0].count = None
    first = prepare(card, source, tmp_path / "out", progress=False)
    manifest = first.manifest.read_bytes()
    masks = tree_digest(first.out / "masks")
    second = prepare(card, source, tmp_path / "out", progress=False)
    assert second.manifest.read_bytes() == manifest and tree_digest(second.out / "masks") == masks
    assert tree_digest(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp or backup folders left


def test_default_out_and_resolve_prepared(tmp_path: Path, isolated_home: Path) -> None:
    MIMICS["llvip"](tmp_path / "src")
    card = load_card("llvip")
    card.layouts[0].count = None
    result = prepare(card, tmp_path / "src", progress=False)
    assert result.out == (isolated_home / "llvip").resolve()
    assert resolve_prepared("llvip") == result.manifest == resolve_prepared(result.out)
    with pytest.raises(FileNotFoundError, match="datasets prepare nope"):
        resolve_prepared("nope")


def test_partial_archive_lists_missing_paths(tmp_path: Path) -> None:
    MIMICS["kermany"](tmp_path / "src")
    (tmp_path / "src" / "OCT2017" / "test" / "NORMAL").rmdir()
    with pytest.raises(SourceError, match=r"layout 'original' is missing: OCT2017/test/NORMAL"):
        prepare("kermany-oct2017", tmp_path / "src", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_exact_count_mismatch_is_an_error(tmp_path: Path) -> None:
    MIMICS["kvasir"](tmp_path / "src")
    with pytest.raises(SourceError, match="yields 3 images, card says 1000"):
        prepare("kvasir-seg", tmp_path / "src", tmp_path / "out", progress=False)


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    MIMICS["olives"](source)
    card = load_card("olives")
    card.layouts[0].count = None
    card.layouts[0].checksums = {"Biomarker_Clinical_Data_Images.csv": "0" * 64}
    before = tree_digest(source)
    with pytest.raises(SourceError, match="Biomarker_Clinical_Data_Images.csv: sha256 [0-9a-f]{64}, expected 0+"):
        prepare(card, source, tmp_path / "out", progress=False)
    assert tree_digest(source) == before and not (tmp_path / "out").exists()


def test_missing_referenced_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    MIMICS["olives"](source)
    next(source.rglob("*.tif")).unlink()
    card = load_card("olives")
    card.layouts[0].count = None
    with pytest.raises(SourceError, match="1 referenced file"):
        prepare(card, source, tmp_path / "out", progress=False)


def test_out_holding_another_dataset_is_refused(tmp_path: Path) -> None:
    _prepare_mimic("llvip", tmp_path)
    MIMICS["kvasir"](tmp_path / "other")
    card = load_card("kvasir-seg")
    card.layouts[0].count = None
    with pytest.raises(ValueError, match="already holds dataset 'llvip'"):
        prepare(card, tmp_path / "other", tmp_path / "out", progress=False)
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and has no readable dataset.json"):
        prepare(card, tmp_path / "other", tmp_path / "stranger", progress=False)


def test_unwritable_out_and_out_inside_source(tmp_path: Path) -> None:
    MIMICS["llvip"](tmp_path / "src")
    card = load_card("llvip")
    card.layouts[0].count = None
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="cannot write next to --out"):
        prepare(card, tmp_path / "src", tmp_path / "file" / "out", progress=False)
    with pytest.raises(ValueError, match="inside the source"):
        prepare(card, tmp_path / "src", tmp_path / "src" / "out", progress=False)


def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "src"
    MIMICS["kvasir"](source)
    (source / "Kvasir-SEG" / "masks" / "cju1.jpg").write_bytes(b"not an image")
    card = load_card("kvasir-seg")
    card.layouts[0].count = None
    with pytest.raises(ValueError, match="cju1.jpg: unreadable image"):
        prepare(card, source, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_failed_rerun_keeps_previous_output(tmp_path: Path) -> None:
    _, first, source = _prepare_mimic("kvasir", tmp_path)
    manifest = first.manifest.read_bytes()
    write_image(source / "Kvasir-SEG" / "images" / "extra.jpg", 5)  # image without a mask
    card = load_card("kvasir-seg")
    card.layouts[0].count = None
    with pytest.raises(ValueError, match="extra.jpg: no mask"):
        prepare(card, source, tmp_path / "out", progress=False)
    assert first.manifest.read_bytes() == manifest


def test_recipe_names_a_prepared_dataset(tmp_path: Path, isolated_home: Path) -> None:
    from dinomed.data.datasets import build_dataset
    from dinomed.recipe import load_recipe

    MIMICS["llvip"](tmp_path / "src")
    card = load_card("llvip")
    card.layouts[0].count = None
    result = prepare(card, tmp_path / "src", progress=False)
    recipe = load_recipe("thermal", overrides=["data.source=manifest", "data.manifest=llvip"])
    dataset = build_dataset(recipe.data, recipe.modality)
    assert len(dataset) == len(_rows(result.manifest)) > 0
