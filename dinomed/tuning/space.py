"""From the recipe's ``tune.space`` to Optuna suggestions, and from a trial's parameters back to a recipe.

LoRA-only parameters are not sampled for ``full`` / ``frozen`` fine-tuning, nor the decoder width for the linear
classification head: a parameter that cannot change the model would only add noise to TPE's density model.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from dinomed.recipe import Recipe, load_recipe
from dinomed.tuning.config import PARAMETERS, TARGET_SETS, Categorical, Distribution, FloatRange

# Parameters with no effect for a task / mode.
_NO_EFFECT = {"head_width": lambda task, mode: task == "cls"}


def active_space(recipe: Recipe) -> dict[str, Distribution]:
    """The distributions that can change this recipe's model (see module docstring)."""
    task, mode = recipe.finetune.task, recipe.finetune.mode
    space = {}
    for name, dist in recipe.tune.distributions(type(recipe)).items():
        param = PARAMETERS.get(name)
        if param is not None and param.lora_only and mode != "lora":
            continue
        if name in _NO_EFFECT and _NO_EFFECT[name](task, mode):
            continue
        space[name] = dist
    return space


def suggest(trial: optuna.Trial, space: dict[str, Distribution]) -> dict[str, Any]:
    """One value per parameter of ``space`` drawn by the trial's sampler."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, Categorical):
            params[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, FloatRange):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        else:
            params[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return params


def recipe_overrides(params: dict[str, Any], recipe: Recipe) -> list[str]:
    """``KEY=VALUE`` overrides that set ``params`` in ``recipe`` (alpha_ratio scales the trial's or recipe's rank)."""
    sets = []
    for name, value in params.items():
        if name == "alpha_ratio":
            value = value * params.get("lora_r", recipe.finetune.lora_r)
        elif name == "targets":
            value = TARGET_SETS[value]
        key = PARAMETERS[name].key if name in PARAMETERS else name
        sets.append(f"{key}={json.dumps(value)}")  # JSON is YAML, which --set values are parsed as
    return sets


def apply_params(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """A copy of ``recipe`` with a trial's parameters set (validated like any recipe)."""
    return load_recipe(recipe, overrides=recipe_overrides(params, recipe))
