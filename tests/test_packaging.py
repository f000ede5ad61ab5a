"""A regular (non-editable) install has everything: the wheel ships the recipes, the --quick profile and the
dataset cards, and reads them through importlib.resources. (.ci/run also installs the wheel into a fresh
virtualenv outside the clone and runs `dinomed recipes`, `dinomed datasets list` and a 2-step pretrain there.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here ({done.stderr.strip()[-300:]})")
    return next(out.glob("dinomed-*.whl"))


def test_the_wheel_ships_recipes_profiles_and_cards(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in ("oct", "endoscopy", "thermal"):
        assert f"dinomed/recipes/{recipe}.yaml" in names
    assert "dinomed/recipes/profiles/quick.yaml" in names
    cards = {p.name for p in (ROOT / "dinomed" / "catalogue" / "cards").glob("*.yaml")}
    assert cards and {f"dinomed/catalogue/cards/{c}" for c in cards} <= names


def test_the_top_level_folders_are_views_of_the_package_data() -> None:
    assert (ROOT / "recipes").resolve() == (ROOT / "dinomed" / "recipes").resolve()
    assert (ROOT / "datasets").resolve() == (ROOT / "dinomed" / "catalogue" / "cards").resolve()
