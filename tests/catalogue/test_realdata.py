"""prepare + check on the real samples in shared/data (CVC-ClinicDB, HIT-UAV, Kermany / OCTDL OCT)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinomed.catalogue import check_manifest, prepare
from dinomed.cli.app import app

pytestmark = pytest.mark.realdata


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_oct_sample_patient_grouping(shared_data: Path, tmp_path: Path) -> None:
    result = prepare("kermany-oct2017", shared_data / "oct", tmp_path / "kermany", progress=False)
    assert result.summary["layout"] == "dinomed-sample" and result.summary["images"] == 168
    by_patient = {r["image"].rsplit("/", 1)[1]: r["group"] for r in _rows(result.manifest)}
    assert by_patient["CNV-1016042-1.png"] == "1016042"
    index = _rows(shared_data / "oct" / "index.csv")
    assert result.summary["groups"] == len({r["patient_id"] for r in index
                                            if r["source"] == "kermany-oct2017" and r["patient_id"]})
    out = CliRunner().invoke(app, ["datasets", "check", str(result.manifest)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert f"168 images, {result.summary['groups']} groups (4 ungrouped images)" in out.stdout


def test_octdl_sample(shared_data: Path, tmp_path: Path) -> None:
    result = prepare("octdl", shared_data / "oct", tmp_path / "octdl", progress=False)
    assert result.summary["classes"] == {"AMD": 10, "VID": 11} and result.summary["groups"] == 18


def test_cvc_sample_sequences_match_the_index(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "endoscopy" / "cvc-clinicdb"
    result = prepare("cvc-clinicdb", source, tmp_path / "cvc", progress=False)
    expected = {r["image"]: f"seq{r['sequence']}" for r in _rows(source / "index.csv")}
    rows = _rows(result.manifest)
    assert len(rows) == 612 and result.summary["groups"] == 29
    assert all(expected[r["image"].split("cvc-clinicdb/", 1)[1]] == r["group"] for r in rows)
    assert check_manifest(result.manifest, progress=False).ok


def test_hit_uav_sample_published_split_leaks(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "thermal" / "hit-uav"
    result = prepare("hit-uav", source, tmp_path / "hit", split_policy="keep", progress=False)
    assert result.summary["images"] == 240 and result.summary["boxes"] == 1984
    report = check_manifest(result.manifest, progress=False)
    assert len(report.groups_crossing) == result.summary["groups"] == 15 and not report.ok
