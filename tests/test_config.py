"""Config machinery and recipes: validation errors name file, key path and expectation; overrides; --quick."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dinomed.config import ConfigError, apply_overrides, from_dict, option, parse_override, to_dict
from dinomed.recipe import RECIPES_DIR, Recipe, available_recipes, load_recipe


@dataclass
class Inner:
    lr: float = option(0.1, "learning rate", min=0.0)
    size: tuple[int, int] = option((2, 3), "a pair")
    mode: str = option("a", "mode", choices=("a", "b"))


@dataclass
class Outer:
    name: str = option("x", "a name")
    steps: int | None = option(None, "optional steps", min=1)
    inner: Inner = option(default_factory=Inner)


def test_nested_values_are_converted() -> None:
    cfg = from_dict(Outer, {"steps": 3, "inner": {"lr": "1e-4", "size": [4, 5]}})
    assert cfg.steps == 3 and cfg.inner.lr == pytest.approx(1e-4) and cfg.inner.size == (4, 5)
    assert to_dict(cfg) == {"name": "x", "steps": 3, "inner": {"lr": 1e-4, "size": [4, 5], "mode": "a"}}


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"inner": {"lrr": 1}}, "inner.lrr", "did you mean 'inner.lr'"),
        ({"stpes": 1}, "stpes", "did you mean 'steps'"),
        ({"steps": "many"}, "steps", "expected"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"inner": {"lr": -1}}, "inner.lr", ">= 0.0"),
        ({"inner": {"mode": "c"}}, "inner.mode", "one of ['a', 'b']"),
        ({"inner": {"size": [1]}}, "inner.size", "expected 2 values"),
        ({"inner": 3}, "inner", "expected a mapping"),
        ({"steps": True}, "steps", "expected"),
    ],
)
def test_errors_name_source_key_and_expectation(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data, source="recipe.yaml")
    message = str(info.value)
    assert message.startswith("recipe.yaml: ") and f"'{key}'" in message and fragment in message


def test_overrides_merge_and_reject_unknown_keys() -> None:
    merged = apply_overrides(Outer, {"inner": {"lr": 0.5}}, ["inner.mode=b", "steps=7", "name=hello world"])
    assert merged == {"inner": {"lr": 0.5, "mode": "b"}, "steps": 7, "name": "hello world"}
    with pytest.raises(ConfigError, match=r"--set bogus.key=1: key 'bogus': unknown key"):
        apply_overrides(Outer, {}, ["bogus.key=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("inner.lr")


@pytest.mark.parametrize("name", ["oct", "endoscopy", "thermal"])
def test_builtin_recipes_load_at_real_scale_and_quick(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.modality == name and recipe.model.arch == "vit_small_patch16_224"
    assert (recipe.augment.global_crops, recipe.augment.global_size) == (2, 224)
    assert (recipe.augment.local_crops, recipe.augment.local_size) == (8, 96)
    assert recipe.model.out_dim == 65536 and recipe.train.epochs == 100
    quick = load_recipe(RECIPES_DIR / f"{name}.yaml", overrides=["train.epochs=3"], quick=True)
    assert quick.model.arch == "vit_tiny_patch16_224" and quick.augment.global_size == 112
    assert quick.modality == name and quick.train.epochs == 3  # overrides win over the profile


def test_recipe_catalogue_and_missing_recipe() -> None:
    assert {"oct", "endoscopy", "thermal"} <= set(available_recipes())
    with pytest.raises(ConfigError, match="built-in recipes: endoscopy, oct, thermal"):
        load_recipe("nonexistent")


def test_bad_recipe_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("modality: oct\noptim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=rf"{bad}: key 'optim.lr': expected a number, got 'fast'"):
        load_recipe(bad)
    bad.write_text("modality: ultrasound\n")
    with pytest.raises(ConfigError, match="key 'modality': expected one of"):
        load_recipe(bad)
    bad.write_text("augment: {global_scale: [0.9, 0.2]}\n")
    with pytest.raises(ConfigError, match="key 'augment': global_scale must satisfy"):
        load_recipe(bad)


def test_resolved_recipe_round_trips() -> None:
    recipe = load_recipe("oct", overrides=["optim.lr=1e-4", "data.root=/x"])
    again = load_recipe(recipe.to_dict())
    assert again == recipe and again.optim.lr == 1e-4 and again.data.root == "/x"
    assert isinstance(again, Recipe)
