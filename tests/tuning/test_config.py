"""The ``tune`` recipe section: typed distributions, defaults, and load-time errors that name the key."""

from __future__ import annotations

import pytest

from dinomed.config import ConfigError
from dinomed.recipe import Recipe, load_recipe
from dinomed.tuning.config import Categorical, FloatRange, IntRange, default_space
from dinomed.tuning.space import active_space, apply_params


def test_default_space_is_typed_and_every_builtin_recipe_loads() -> None:
    for name in ("oct", "endoscopy", "thermal"):
        space = load_recipe(name).tune.distributions(Recipe)
        assert set(space) == set(default_space())
    space = load_recipe("endoscopy").tune.distributions(Recipe)
    assert space["lr"] == FloatRange(1e-4, 3e-3, log=True)
    assert isinstance(space["lora_r"], Categorical) and space["lora_r"].choices == [2, 4, 8, 16]
    assert isinstance(space["patience"], IntRange)


@pytest.mark.parametrize("entry,message", [
    ("{foo: {low: 1, high: 2}}", "space.foo: unknown parameter"),
    ("{lora_r: {choices: []}}", "space.lora_r: choices is empty"),
    ("{lr: {low: 0.1, high: 0.01}}", r"space.lr: low \(0.1\) must be below high"),
    ("{patience: {low: 5, high: 5}}", "space.patience: low .* must be below high"),
    ("{patience: {low: 1.5, high: 5}}", "space.patience.low: expected an integer"),
    ("{targets: {choices: [kvv]}}", r"space.targets: unknown target set\(s\) \['kvv'\]"),
    ("{targets: {low: 1, high: 2}}", "space.targets: this parameter needs choices"),
    ("{lr: {low: 0.0, high: 0.1, log: true}}", "space.lr: log: true needs low > 0"),
    ("{lr: 0.001}", "key 'tune.space.lr': expected a mapping"),
])
def test_invalid_space_fails_at_load_naming_the_key(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message if message.startswith("key") else f"key 'tune': {message}"):
        load_recipe("endoscopy", overrides=[f"tune.space={entry}"])


def test_dotted_recipe_keys_are_checked_against_the_schema() -> None:
    recipe = load_recipe({"modality": "endoscopy", "tune": {"space": {"finetune.batch_size": {"low": 2, "high": 8}}}})
    assert recipe.tune.distributions(Recipe)["finetune.batch_size"] == IntRange(2, 8)
    with pytest.raises(ConfigError, match="space.finetune.nope: 'nope' is not a recipe key"):
        load_recipe({"tune": {"space": {"finetune.nope": {"low": 1, "high": 2}}}})


def test_params_become_recipe_values_and_inactive_ones_are_skipped() -> None:
    recipe = load_recipe("endoscopy")
    tuned = apply_params(recipe, {"lr": 2e-4, "lora_r": 8, "alpha_ratio": 2.0, "targets": "qkv+mlp",
                                  "head_width": 64, "augment_strength": 0.5})
    cfg = tuned.finetune
    assert (cfg.lr, cfg.lora_r, cfg.lora_alpha, cfg.head_hidden) == (2e-4, 8, 16.0, 64)
    assert cfg.lora_targets == ["q", "k", "v", "fc1", "fc2"] and tuned.augment.strength == 0.5
    frozen_cls = load_recipe("oct", overrides=["finetune.mode=frozen", "finetune.task=cls"])
    assert set(active_space(frozen_cls)) == {"lr", "weight_decay", "augment_strength", "patience"}
