"""check: exact and near duplicates, groups crossing splits, missing/unreadable files, class balance, CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from dinomed.catalogue import check_manifest
from dinomed.cli.app import app
from tests.catalogue.conftest import write_image

COLUMNS = ["image", "label", "mask", "depth", "group", "split"]


def _smooth(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC).save(path)


def _manifest(root: Path, rows: list[dict[str, str]]) -> Path:
    path = root / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{c: r.get(c, "") for c in COLUMNS} for r in rows])
    return path


def test_clean_manifest_is_ok(tmp_path: Path) -> None:
    for i in range(4):
        _smooth(tmp_path / f"{i}.png", i)
    path = _manifest(tmp_path, [{"image": f"{i}.png", "label": "ab"[i % 2], "group": f"p{i // 2}",
                                 "split": ["train", "test"][i // 2]} for i in range(4)])
    report = check_manifest(path, progress=False)
    assert report.ok and report.class_balance == {"test": {"a": 1, "b": 1}, "train": {"a": 1, "b": 1}}
    assert report.groups["groups"] == 2


def test_leaks_are_found(tmp_path: Path) -> None:
    _smooth(tmp_path / "a.png", 1)
    shutil.copy(tmp_path / "a.png", tmp_path / "a_copy.png")
    Image.open(tmp_path / "a.png").convert("RGB").resize((60, 60)).save(tmp_path / "a_resaved.jpg", quality=80)
    _smooth(tmp_path / "b.png", 2)
    path = _manifest(tmp_path, [
        {"image": "a.png", "group": "p1", "split": "train"},
        {"image": "a_copy.png", "group": "p2", "split": "test"},      # same bytes in test
        {"image": "a_resaved.jpg", "group": "p3", "split": "val"},   # re-encoded copy in val
        {"image": "b.png", "group": "p1", "split": "test"},           # patient p1 in train and test
    ])
    report = check_manifest(path, progress=False)
    assert report.groups_crossing == {"p1": ["test", "train"]}
    assert [d["images"] for d in report.exact_duplicates] == [["a.png", "a_copy.png"]]
    assert report.exact_duplicates[0]["crosses_split"]
    near = {tuple(sorted(d["images"])) for d in report.near_duplicates}
    assert ("a.png", "a_resaved.jpg") in near and ("a_copy.png", "a_resaved.jpg") in near
    assert not report.ok and report.leaks == 1 + 1 + len(report.near_duplicates)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", 0)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    path = _manifest(tmp_path, [{"image": "ok.png", "mask": "gone.png"}, {"image": "broken.png"},
                                {"image": "absent.jpg"}])
    report = check_manifest(path, progress=False)
    assert {(m["column"], m["path"]) for m in report.missing} == {("mask", "gone.png"), ("image", "absent.jpg")}
    assert [u["path"] for u in report.unreadable] == ["broken.png"]
    assert not report.ok


def test_cli_check_json_and_exit_status(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 0)
    path = _manifest(tmp_path, [{"image": "a.png", "group": "g", "split": "train"},
                                {"image": "missing.png", "group": "g", "split": "test"}])
    result = CliRunner().invoke(app, ["datasets", "check", str(path), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["groups_crossing"] == {"g": ["test", "train"]}
    path = _manifest(tmp_path, [{"image": "a.png", "group": "g", "split": "train"}])
    result = CliRunner().invoke(app, ["datasets", "check", str(path)])
    assert result.exit_code == 0 and "findings (OK)" in result.stdout


def test_cli_list_show_prepare(tmp_path: Path) -> None:
    from tests.catalogue.conftest import MIMICS

    runner = CliRunner()
    listing = runner.invoke(app, ["datasets", "list"])
    assert listing.exit_code == 0 and "hit-uav" in listing.stdout
    shown = runner.invoke(app, ["datasets", "show", "llvip"])
    assert shown.exit_code == 0 and "LLVIP/Annotations" in shown.stdout
    MIMICS["hamlyn"](tmp_path / "src")
    prepared = runner.invoke(app, ["datasets", "prepare", "hamlyn", "--source", str(tmp_path / "src"),
                                   "--out", str(tmp_path / "out")])
    assert prepared.exit_code == 0, prepared.output
    assert "4 images, 2 video groups" in prepared.stdout


def test_a_byte_order_mark_is_read_as_training_reads_it(tmp_path: Path) -> None:
    """Excel writes CSV with a byte-order mark; check once saw a column '\\ufeffimage' where training saw 'image'."""
    for i in range(4):
        _smooth(tmp_path / f"{i}.png", i)
    path = _manifest(tmp_path, [{"image": f"{i}.png", "label": "ab"[i % 2], "group": f"p{i // 2}",
                                 "split": ["train", "test"][i // 2]} for i in range(4)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = check_manifest(path, progress=False)
    assert report.ok and report.images == 4 and report.groups["groups"] == 2
