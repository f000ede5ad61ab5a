"""Recipe section ``tune``: the hyper-parameter search space, cross-validation folds, pruner and sampler seed.

A space entry is one of three typed distributions, told apart by its keys: ``{choices: [...]}`` is
:class:`Categorical`; ``{low, high, log}`` is :class:`FloatRange` or :class:`IntRange` by the parameter's kind.
Names are the short names of :data:`PARAMETERS` or any dotted recipe key (``finetune.batch_size``), so a new
recipe option can be searched without code changes. A parameter left out of the space keeps the recipe's value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dinomed.config import ConfigError, from_dict, option

PRUNERS = ("median", "hyperband", "none")

TARGET_SETS: dict[str, list[str]] = {
    "kv": ["k", "v"],  # Hu et al. 2021: rank 4 on keys and values
    "qv": ["q", "v"],  # Surgical-DINO (Cui et al. 2024)
    "qkv": ["q", "k", "v"],
    "qkv+mlp": ["q", "k", "v", "fc1", "fc2"],
}
"""Named LoRA target sets the ``targets`` parameter chooses from."""


@dataclass(frozen=True)
class Parameter:
    """A short parameter name: its kind, the recipe key it sets and whether it only matters for LoRA."""

    kind: str
    key: str
    lora_only: bool = False


PARAMETERS: dict[str, Parameter] = {
    "lr": Parameter("float", "finetune.lr"),
    "lora_r": Parameter("int", "finetune.lora_r", lora_only=True),
    "alpha_ratio": Parameter("float", "finetune.lora_alpha", lora_only=True),  # lora_alpha = ratio * lora_r
    "targets": Parameter("categorical", "finetune.lora_targets", lora_only=True),  # a TARGET_SETS name
    "dropout": Parameter("float", "finetune.lora_dropout", lora_only=True),
    "weight_decay": Parameter("float", "finetune.weight_decay"),
    "augment_strength": Parameter("float", "augment.strength"),  # paired training augmentation (finetune.augment)
    "epochs": Parameter("int", "finetune.epochs"),
    "patience": Parameter("int", "finetune.patience"),
    "head_width": Parameter("int", "finetune.head_hidden"),  # seg / depth decoders only
}


@dataclass
class FloatRange:
    """Uniform (or log-uniform when ``log``) float in [low, high]."""

    low: float = option(help="smallest value")
    high: float = option(help="largest value")
    log: bool = option(False, "sample the logarithm uniformly (learning rates, weight decay)")

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}")


@dataclass
class IntRange:
    """Integer in [low, high] on a grid of ``step``."""

    low: int = option(help="smallest value")
    high: int = option(help="largest value")
    step: int = option(1, "grid spacing", min=1)
    log: bool = option(False, "sample the logarithm uniformly")

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log: true needs low > 0 and step 1")


@dataclass
class Categorical:
    """One of a list of values."""

    choices: list[Any] = option(help="candidate values (at least one)")

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("choices is empty; give at least one value")


Distribution = FloatRange | IntRange | Categorical


def default_space() -> dict[str, dict[str, Any]]:
    """Ranges around the LoRA literature's choices (rank 4, alpha = rank, lr ~1e-3) wide enough to matter."""
    return {
        "lr": {"low": 1e-4, "high": 3e-3, "log": True},
        "lora_r": {"choices": [2, 4, 8, 16]},
        "alpha_ratio": {"low": 0.5, "high": 4.0, "log": True},
        "targets": {"choices": list(TARGET_SETS)},
        "dropout": {"low": 0.0, "high": 0.3},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "augment_strength": {"low": 0.0, "high": 1.5},
        "patience": {"low": 3, "high": 10},
        "head_width": {"choices": [64, 128, 256]},
    }


def _kind(name: str, schema: type) -> str:
    """'float', 'int' or 'categorical' for a short name or a dotted key of the recipe ``schema`` (checked)."""
    if name in PARAMETERS:
        return PARAMETERS[name].kind
    current: Any = schema
    for part in name.split("."):
        fields = {f.name for f in dataclasses.fields(current)} if dataclasses.is_dataclass(current) else set()
        if part not in fields:
            raise ValueError(f"space.{name}: '{part}' is not a recipe key here; valid: {sorted(fields) or 'none'}")
        current = typing.get_type_hints(current)[part]
        args = [a for a in typing.get_args(current) if a is not type(None)]
        if len(args) == 1 and typing.get_origin(current) in (typing.Union, types.UnionType):
            current = args[0]
    return {float: "float", int: "int"}.get(current, "categorical")


def parse_distribution(name: str, raw: Any, schema: type) -> Distribution:
    """Typed distribution of space entry ``name``; ``ValueError`` names ``space.<name>`` and what is wrong."""
    if name not in PARAMETERS and "." not in name:
        raise ValueError(f"space.{name}: unknown parameter; valid names are {sorted(PARAMETERS)} "
                         "or a dotted recipe key such as finetune.batch_size")
    if not isinstance(raw, Mapping):
        raise ValueError(f"space.{name}: expected a mapping such as {{low: 1, high: 8}} or {{choices: [...]}}, got {raw!r}")
    try:
        kind = _kind(name, schema)
        if "choices" in raw:
            dist: Distribution = from_dict(Categorical, raw, prefix=f"space.{name}")
        elif kind == "categorical":
            raise ValueError(f"space.{name}: this parameter needs choices: [...]")
        else:
            dist = from_dict(FloatRange if kind == "float" else IntRange, raw, prefix=f"space.{name}")
    except ConfigError as err:
        raise ValueError(f"{err.key}: {err.problem}") from None
    if name == "targets":
        unknown = [c for c in dist.choices if c not in TARGET_SETS]
        if unknown:
            raise ValueError(f"space.targets: unknown target set(s) {unknown}; valid sets are {list(TARGET_SETS)}")
    return dist


@dataclass
class TuneConfig:
    """Optuna search for label-scarce fine-tuning: k-fold grouped CV inside the labelled subset, TPE, pruning."""

    folds: int = option(3, "cross-validation folds over the labelled subset's groups (patients / sequences)", min=2)
    trials: int = option(30, "trials the study should hold (finished ones count when resuming)", min=1)
    timeout: float | None = option(None, "stop starting new trials after this many seconds", min=0.0)
    pruner: str = option("median", "stops weak trials early: median (MedianPruner), hyperband or none",
                         choices=PRUNERS)
    startup_trials: int = option(3, "trials that finish before the median pruner prunes anything", min=0)
    warmup_epochs: int = option(1, "epochs of a trial reported before it can be pruned", min=0)
    seed: int = option(0, "seed of the TPE sampler and of the fold assignment")
    space: dict[str, dict[str, Any]] = option(
        default_factory=default_space,
        help="parameter -> {low, high, log} or {choices}; names: " + ", ".join(PARAMETERS) + " or a dotted recipe key",
    )

    def distributions(self, schema: type) -> dict[str, Distribution]:
        """The typed search space, in the order written; dotted names are keys of the recipe ``schema``
        (the ``Recipe`` class, which checks its own ``tune`` section with this at load)."""
        return {name: parse_distribution(name, raw, schema) for name, raw in self.space.items()}
